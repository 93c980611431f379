//! The web server against clients that trickle: raw TCP sockets against a real master.

use std::time::{Duration, Instant};

use moonbot::runtime::http::{BODY_TIMEOUT, HEADER_TIMEOUT, MAX_CONNECTIONS};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

mod support;

const CONFIG: &str = r#"
local c = BuildmasterConfig
c['status'] = { status.WebStatus{http_port="tcp:0:interface=127.0.0.1"} }
"#;

/// Sends `head`, then one byte of `trickle` a second, until the server closes the
/// connection (or twice the body timeout has passed); what it answered and after how long.
async fn trickle(address: std::net::SocketAddr, head: String, trickle: u8) -> (String, Duration) {
    let start = Instant::now();
    let stream = TcpStream::connect(address).await.unwrap();
    let (mut reader, mut writer) = stream.into_split();
    writer.write_all(head.as_bytes()).await.unwrap();
    let writing = tokio::spawn(async move {
        loop {
            tokio::time::sleep(Duration::from_secs(1)).await;
            if writer.write_all(&[trickle]).await.is_err() {
                return;
            }
        }
    });
    let mut answer = Vec::new();
    let mut buffer = [0; 4096];
    // Bounded, so that a server that never lets go fails the test instead of hanging it.
    let _ = tokio::time::timeout(BODY_TIMEOUT * 2, async {
        loop {
            match reader.read(&mut buffer).await {
                Ok(0) | Err(_) => break,
                Ok(n) => answer.extend_from_slice(&buffer[..n]),
            }
        }
    })
    .await;
    writing.abort();
    (
        String::from_utf8_lossy(&answer).into_owned(),
        start.elapsed(),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn clients_that_trickle_headers_or_bodies_are_cut_off_while_others_are_served() {
    let master = support::TestMaster::start(CONFIG).await;
    let address = master.web_address.unwrap();
    let slow_headers: Vec<_> = (0..50)
        .map(|_| {
            let head = "GET /api/v2/builders HTTP/1.1\r\nHost: x\r\nX-Slow: ".to_string();
            tokio::spawn(trickle(address, head, b'a'))
        })
        .collect();
    let slow_bodies: Vec<_> = (0..10)
        .map(|_| {
            let head = "POST /api/v2/forceschedulers/force HTTP/1.1\r\nHost: x\r\n\
                        Content-Type: application/json\r\nContent-Length: 1000\r\n\r\n"
                .to_string();
            tokio::spawn(trickle(address, head, b' '))
        })
        .collect();

    let api = format!("http://{address}/api/v2/builders");
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert_eq!(reqwest::get(&api).await.unwrap().status(), 200);

    for connection in slow_headers {
        let (answer, after) = connection.await.unwrap();
        assert!(
            after >= HEADER_TIMEOUT - Duration::from_secs(1)
                && after < HEADER_TIMEOUT + Duration::from_secs(5),
            "a connection trickling its headers closed after {after:?}: {answer}"
        );
        assert!(
            answer.is_empty() || answer.starts_with("HTTP/1.1 408"),
            "{answer}"
        );
    }
    assert_eq!(reqwest::get(&api).await.unwrap().status(), 200);
    for connection in slow_bodies {
        let (answer, after) = connection.await.unwrap();
        assert!(
            after >= BODY_TIMEOUT - Duration::from_secs(1)
                && after < BODY_TIMEOUT + Duration::from_secs(5),
            "a connection trickling its body closed after {after:?}: {answer}"
        );
        assert!(answer.starts_with("HTTP/1.1 408"), "{answer}");
        assert!(
            answer.ends_with(r#"{"error":"request body not received within 30 s"}"#),
            "{answer}"
        );
    }
    assert_eq!(reqwest::get(&api).await.unwrap().status(), 200);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connections_past_the_limit_wait_for_a_free_slot() {
    let master = support::TestMaster::start(CONFIG).await;
    let address = master.web_address.unwrap();
    let start = Instant::now();
    let mut idle = Vec::new();
    for _ in 0..MAX_CONNECTIONS {
        idle.push(TcpStream::connect(address).await.unwrap());
    }
    let mut one_more = TcpStream::connect(address).await.unwrap();
    one_more
        .write_all(b"GET /api/v2/builders HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        .await
        .unwrap();
    let mut answer = String::new();
    tokio::time::timeout(HEADER_TIMEOUT * 3, one_more.read_to_string(&mut answer))
        .await
        .expect("answered once the idle connections are cut off")
        .unwrap();
    assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
    assert!(
        start.elapsed() >= HEADER_TIMEOUT - Duration::from_secs(1),
        "answered after {:?}, before any slot was free",
        start.elapsed()
    );
    drop(idle);
}
