//! wss:// against a TLS test server whose CA is generated at test time: a custom root store
//! connects; the default (webpki) roots refuse the certificate with a fatal, clear error.

mod common;

use actix_web::{web, App, HttpRequest, HttpServer};
use common::{fast, wait_for, Watch, DEADLINE};
use resocket::server::{accept, ServerConfig, Session, SessionHandler};
use resocket::tls::RootCertStore;
use resocket::{CloseReason, Error, SendMessage, SocketActor, SocketState};
use rustls_pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer};

struct Echo;

impl SessionHandler for Echo {
    fn text(&mut self, session: &Session, text: &str) {
        session.text(text.to_string());
    }
}

/// A CA and a server certificate for 127.0.0.1 signed by it.
fn certificates() -> (
    CertificateDer<'static>,
    CertificateDer<'static>,
    PrivateKeyDer<'static>,
) {
    use rcgen::{BasicConstraints, CertificateParams, IsCa, KeyPair};
    let ca_key = KeyPair::generate().unwrap();
    let mut ca_params = CertificateParams::new(Vec::<String>::new()).unwrap();
    ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    let ca = ca_params.self_signed(&ca_key).unwrap();
    let server_key = KeyPair::generate().unwrap();
    let server_params = CertificateParams::new(vec!["127.0.0.1".to_string()]).unwrap();
    let issuer = rcgen::Issuer::new(ca_params, ca_key);
    let server = server_params.signed_by(&server_key, &issuer).unwrap();
    let key = PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(server_key.serialize_der()));
    (ca.der().clone(), server.der().clone(), key)
}

async fn tls_server(cert: CertificateDer<'static>, key: PrivateKeyDer<'static>) -> String {
    let _ = rustls::crypto::ring::default_provider().install_default();
    let config = rustls::ServerConfig::builder()
        .with_no_client_auth()
        .with_single_cert(vec![cert], key)
        .unwrap();
    let server = HttpServer::new(|| {
        App::new().route(
            "/ws",
            web::get().to(|req: HttpRequest, payload: web::Payload| async move {
                accept(&req, payload, Echo, ServerConfig::default())
            }),
        )
    })
    .workers(1)
    .disable_signals()
    .bind_rustls_0_23(("127.0.0.1", 0), config)
    .unwrap();
    let addr = server.addrs()[0];
    actix_rt::spawn(server.run());
    format!("wss://{addr}/ws")
}

#[actix_rt::test]
async fn a_private_ca_in_the_root_store_connects() {
    let (ca, cert, key) = certificates();
    let url = tls_server(cert, key).await;
    let mut roots = RootCertStore::empty();
    roots.add(ca).unwrap();
    let socket = SocketActor::connect(fast(&url).tls_roots(roots).build().unwrap());
    let watch = Watch::attach(&socket);
    watch.wait_opens(1).await;
    socket
        .send(SendMessage::text("over tls"))
        .await
        .unwrap()
        .unwrap();
    wait_for("echo", DEADLINE, || watch.texts() == ["over tls"]).await;
}

#[actix_rt::test]
async fn a_certificate_that_does_not_verify_is_fatal_and_says_why() {
    let (_ca, cert, key) = certificates();
    let url = tls_server(cert, key).await;
    // Default roots: the test CA is unknown to them.
    let socket = SocketActor::connect(fast(&url).build().unwrap());
    let watch = Watch::attach(&socket);
    let state = watch.wait_state("closed", SocketState::is_closed).await;
    let SocketState::Closed {
        reason: CloseReason::Fatal(Error::Tls(message)),
    } = &state
    else {
        panic!("expected a fatal TLS error, got {state:?}");
    };
    assert!(message.contains("certificate"), "{message}");
    let shown = Error::Tls(message.clone()).to_string();
    assert!(
        shown.starts_with("TLS handshake failed: invalid peer certificate"),
        "{shown}"
    );
    // Exactly one attempt: a bad certificate is not retried.
    assert_eq!(
        watch
            .states()
            .iter()
            .filter(|s| s.name() == "connecting")
            .count(),
        1
    );
}
