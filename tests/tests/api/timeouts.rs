//! Connections a client holds without finishing them are closed by the server: headers that
//! never complete, an idle keep-alive connection, a body that trickles; and while many such
//! connections are open, a normal client still gets its answers.

use std::time::Duration;

use kiln_tests::{Options, TestApp, spawn_app_with};
use tokio::{
    io::{AsyncReadExt, AsyncWriteExt},
    net::TcpStream,
};

async fn app() -> TestApp {
    spawn_app_with(Options {
        without_worker: true,
        ..Options::default()
            .env("KILN_HEADER_TIMEOUT_SECS", "1")
            .env("KILN_REQUEST_TIMEOUT_SECS", "2")
            // Connections, not rates or caps, are what these tests are about.
            .env("KILN_RATE_LIMIT", "0")
            .env("KILN_MAX_UPLOADS_IN_FLIGHT", "0")
            .env("KILN_TENANT_UPLOADS_IN_FLIGHT", "0")
            .env("KILN_UPLOAD_MIN_BYTES_PER_SEC", "1000")
            .env("KILN_UPLOAD_RATE_WINDOW_SECS", "2")
    })
    .await
}

async fn connect(app: &TestApp) -> TcpStream {
    let address = app.address.trim_start_matches("http://");
    TcpStream::connect(address).await.expect("connect")
}

/// Reads until the server closes the connection (at most a minute); returns what it sent.
async fn read_until_closed(stream: &mut TcpStream) -> String {
    let mut received = Vec::new();
    let read = tokio::time::timeout(Duration::from_secs(60), stream.read_to_end(&mut received));
    match read.await {
        Ok(Ok(_)) => {}
        // A reset closes it too.
        Ok(Err(error)) if error.kind() == std::io::ErrorKind::ConnectionReset => {}
        Ok(Err(error)) => panic!("read failed: {error}"),
        Err(_) => panic!("the server never closed the connection"),
    }
    String::from_utf8_lossy(&received).into_owned()
}

#[tokio::test]
async fn connections_trickling_headers_are_closed_while_a_normal_client_is_served() {
    let app = app().await;
    let mut tricklers = Vec::new();
    for _ in 0..300 {
        let stream = connect(&app).await;
        let (reader, mut writer) = stream.into_split();
        // A header line, then one more byte of it every 300 ms, until the server hangs up.
        let trickle = tokio::spawn(async move {
            let start = b"GET /healthz HTTP/1.1\r\nHost: kiln\r\nX-Slow: ";
            let mut sent = writer.write_all(start).await.is_ok();
            while sent {
                tokio::time::sleep(Duration::from_millis(300)).await;
                sent = writer.write_all(b"x").await.is_ok();
            }
        });
        tricklers.push((trickle, read_answer(reader)));
    }
    served_promptly(&app).await;
    for (trickle, answer) in tricklers {
        let sent = answer.await.expect("reader");
        trickle.abort();
        assert!(!sent.contains("200 OK"), "{sent}");
    }
}

/// Reads what the server sends on `reader` until it closes the connection (a minute at most).
fn read_answer(mut reader: tokio::net::tcp::OwnedReadHalf) -> tokio::task::JoinHandle<String> {
    tokio::spawn(async move {
        let mut received = Vec::new();
        let read = reader.read_to_end(&mut received);
        let read = tokio::time::timeout(Duration::from_secs(60), read).await;
        assert!(read.is_ok(), "the server never closed the connection");
        String::from_utf8_lossy(&received).into_owned()
    })
}

/// A normal client's authenticated requests are answered while the tricklers hang on: each
/// within a bound far above its usual few milliseconds, so only a server that stopped serving
/// fails it.
async fn served_promptly(app: &TestApp) {
    for _ in 0..5 {
        let path = format!("/v1/jobs/{}", uuid::Uuid::now_v7());
        let answer = tokio::time::timeout(Duration::from_secs(10), app.get(&path)).await;
        let answer = answer.expect("a normal request answered within 10 s");
        assert_eq!(answer.status, 404, "{:?}", answer.body);
        let health = tokio::time::timeout(Duration::from_secs(10), app.get_as(None, "/healthz"));
        assert_eq!(health.await.expect("answered within 10 s").status, 200);
    }
}

#[tokio::test]
async fn an_idle_keep_alive_connection_is_closed() {
    let app = app().await;
    let mut stream = connect(&app).await;
    stream
        .write_all(b"GET /healthz HTTP/1.1\r\nHost: kiln\r\n\r\n")
        .await
        .expect("request");
    // The answer comes, then nothing more is asked: the server closes the connection.
    let sent = read_until_closed(&mut stream).await;
    assert!(sent.starts_with("HTTP/1.1 200"), "{sent}");
}

#[tokio::test]
async fn a_trickling_body_gets_a_408_within_the_request_deadline() {
    let app = app().await;
    let mut stream = connect(&app).await;
    let head = format!(
        "POST /v1/emails HTTP/1.1\r\nHost: kiln\r\nAuthorization: Bearer {}\r\n\
         Content-Type: application/json\r\nContent-Length: 1000\r\n\r\n{{\"to\":",
        app.key
    );
    stream.write_all(head.as_bytes()).await.expect("request");
    let sent = read_until_closed(&mut stream).await;
    assert!(sent.starts_with("HTTP/1.1 408"), "{sent}");
    assert!(sent.contains("\"request_timeout\""), "{sent}");
}

#[tokio::test]
async fn connections_trickling_bodies_are_all_answered_408_while_a_normal_client_is_served() {
    let app = app().await;
    let mut tricklers = Vec::new();
    for n in 0..300 {
        let stream = connect(&app).await;
        // Half are uploads (held to the minimum pace), half JSON (held to the deadline).
        let (path, kind) = if n % 2 == 0 {
            ("/v1/media", "image/jpeg")
        } else {
            ("/v1/emails", "application/json")
        };
        let head = format!(
            "POST {path} HTTP/1.1\r\nHost: kiln\r\nAuthorization: Bearer {}\r\n\
             Content-Type: {kind}\r\nContent-Length: 100000\r\n\r\n",
            app.key
        );
        let (reader, mut writer) = stream.into_split();
        writer.write_all(head.as_bytes()).await.expect("head");
        let start = if n % 2 == 0 {
            kiln_tests::images::sideways_jpeg(64, 32)[..16].to_vec()
        } else {
            b"{\"to\":".to_vec()
        };
        writer.write_all(&start).await.expect("start of body");
        // One more byte every half second, until the server hangs up.
        let trickle = tokio::spawn(async move {
            while writer.write_all(b" ").await.is_ok() {
                tokio::time::sleep(Duration::from_millis(500)).await;
            }
        });
        tricklers.push((trickle, read_answer(reader)));
    }
    served_promptly(&app).await;
    for (trickle, answer) in tricklers {
        let sent = answer.await.expect("reader");
        trickle.abort();
        assert!(sent.starts_with("HTTP/1.1 408"), "{sent}");
    }
    assert!(app.stored_files().is_empty(), "{:?}", app.stored_files());
}
