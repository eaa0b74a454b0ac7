// An independent WebSocket server (Node `ws`) for resocket's interop tests.
//
// Prints its port, then serves ws://127.0.0.1:PORT/. It pings every 100 ms and drops a client
// that has not answered the previous ping. Text commands: `close:CODE` (close with that code),
// `abort` (drop the TCP connection, no Close frame), `big:N` (send N bytes); anything else is
// echoed.
const { WebSocketServer } = require('ws');

const wss = new WebSocketServer({ host: '127.0.0.1', port: 0, maxPayload: 1 << 24 });
wss.on('listening', () => console.log(wss.address().port));
wss.on('connection', (ws) => {
  let alive = true;
  ws.on('pong', () => { alive = true; });
  const timer = setInterval(() => {
    if (!alive) { ws.terminate(); return; }
    alive = false;
    ws.ping();
  }, 100);
  ws.on('close', () => clearInterval(timer));
  ws.on('message', (data, isBinary) => {
    const m = data.toString();
    if (!isBinary && m.startsWith('close:')) ws.close(parseInt(m.slice(6), 10), 'bye');
    else if (!isBinary && m === 'abort') ws.terminate();
    else if (!isBinary && m.startsWith('big:')) ws.send('x'.repeat(parseInt(m.slice(4), 10)));
    else ws.send(data, { binary: isBinary });
  });
});
