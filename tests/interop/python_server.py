"""An independent WebSocket server (Python `websockets`) for resocket's interop tests.

Prints its port, then serves ws://127.0.0.1:PORT/. It pings every 100 ms and drops a client
that does not answer within 300 ms. Text commands: `close:CODE` (close with that code),
`abort` (drop the TCP connection, no Close frame), `big:N` (send N bytes); anything else is
echoed.
"""
import asyncio

from websockets.asyncio.server import serve


async def handler(ws):
    async for message in ws:
        if isinstance(message, str) and message.startswith("close:"):
            await ws.close(int(message[6:]), "bye")
            return
        if message == "abort":
            ws.transport.abort()
            return
        if isinstance(message, str) and message.startswith("big:"):
            await ws.send("x" * int(message[4:]))
            continue
        await ws.send(message)


async def main():
    async with serve(
        handler, "127.0.0.1", 0, ping_interval=0.1, ping_timeout=0.3, max_size=2**24
    ) as server:
        print(server.sockets[0].getsockname()[1], flush=True)
        await asyncio.Future()


asyncio.run(main())
