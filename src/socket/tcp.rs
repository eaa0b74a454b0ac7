//! The TCP connector awc connects through: awc's own (DNS, then TCP), plus TCP_NODELAY on
//! every new connection. Without it, Nagle's algorithm holds a small write while an earlier
//! one is unacknowledged, and a peer's delayed ACK turns that into ~40 ms stalls: in acked
//! mode a message and an ack written back to back arrive in bursts.

use actix_rt::net::TcpStream;
use actix_service::Service;
use actix_tls::connect::{
    ConnectError, ConnectInfo, Connection, Connector as TcpConnector, Resolver,
};
use awc::http::Uri;

/// awc's TCP connector, with `nodelay` applied to each connection.
pub(crate) fn connector(
    nodelay: bool,
) -> impl Service<ConnectInfo<Uri>, Response = Connection<Uri, TcpStream>, Error = ConnectError> + Clone
{
    let inner = TcpConnector::new(Resolver::default()).service();
    actix_service::fn_service(move |request: ConnectInfo<Uri>| {
        let connecting = inner.call(request);
        async move {
            let connection = connecting.await?;
            if nodelay {
                if let Err(e) = connection.io_ref().set_nodelay(true) {
                    log::debug!("resocket: TCP_NODELAY not set: {e}");
                }
            }
            Ok(connection)
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[actix_rt::test]
    async fn connections_have_nodelay_set_as_configured() {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        let uri: Uri = format!("http://{addr}/").parse().unwrap();
        for nodelay in [true, false] {
            let service = connector(nodelay);
            let connection = service
                .call(ConnectInfo::new(uri.clone()).set_addr(Some(addr)))
                .await
                .unwrap();
            assert_eq!(connection.io_ref().nodelay().unwrap(), nodelay);
        }
    }
}
