//! A small SMTP receiver on 127.0.0.1:0 for tests: it speaks enough of RFC 5321 for lettre
//! (EHLO, MAIL, RCPT, DATA, RSET, NOOP, QUIT), keeps every message, and can be switched "down"
//! (it then greets with 421 and hangs up, as a server in trouble does).
#![allow(dead_code, clippy::unwrap_used, clippy::expect_used)]

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};

use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::net::TcpListener;

#[derive(Debug, Clone)]
pub struct Received {
    pub from: String,
    pub to: Vec<String>,
    pub data: String,
}

#[derive(Clone, Default)]
pub struct SmtpServer {
    pub port: u16,
    messages: Arc<Mutex<Vec<Received>>>,
    down: Arc<AtomicBool>,
}

impl SmtpServer {
    pub async fn start() -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let server = Self { port: listener.local_addr().unwrap().port(), ..Self::default() };
        let state = server.clone();
        tokio::spawn(async move {
            while let Ok((socket, _)) = listener.accept().await {
                tokio::spawn(state.clone().session(socket));
            }
        });
        server
    }

    pub fn url(&self) -> String {
        format!("smtp://127.0.0.1:{}?tls=none", self.port)
    }

    pub fn set_down(&self, down: bool) {
        self.down.store(down, Ordering::SeqCst);
    }

    pub fn messages(&self) -> Vec<Received> {
        self.messages.lock().unwrap().clone()
    }

    async fn session(self, socket: tokio::net::TcpStream) {
        let (read, mut write) = socket.into_split();
        let mut lines = BufReader::new(read).lines();
        if self.down.load(Ordering::SeqCst) {
            let _ = write.write_all(b"421 4.3.2 test server is down\r\n").await;
            return;
        }
        let _ = write.write_all(b"220 localhost ESMTP test\r\n").await;
        let mut current = Received { from: String::new(), to: Vec::new(), data: String::new() };
        while let Ok(Some(line)) = lines.next_line().await {
            let upper = line.to_ascii_uppercase();
            let reply: &[u8] = if upper.starts_with("EHLO") || upper.starts_with("HELO") {
                b"250-localhost\r\n250 8BITMIME\r\n"
            } else if upper.starts_with("MAIL FROM:") {
                current.from = line[10..].trim().to_owned();
                b"250 2.1.0 OK\r\n"
            } else if upper.starts_with("RCPT TO:") {
                current.to.push(line[8..].trim().to_owned());
                b"250 2.1.5 OK\r\n"
            } else if upper == "DATA" {
                let _ = write.write_all(b"354 end with <CRLF>.<CRLF>\r\n").await;
                while let Ok(Some(data)) = lines.next_line().await {
                    if data == "." {
                        break;
                    }
                    current.data.push_str(data.strip_prefix('.').unwrap_or(&data));
                    current.data.push('\n');
                }
                let done = std::mem::replace(
                    &mut current,
                    Received { from: String::new(), to: Vec::new(), data: String::new() },
                );
                self.messages.lock().unwrap().push(done);
                b"250 2.0.0 queued\r\n"
            } else if upper == "QUIT" {
                let _ = write.write_all(b"221 2.0.0 bye\r\n").await;
                return;
            } else {
                b"250 OK\r\n"
            };
            if write.write_all(reply).await.is_err() {
                return;
            }
        }
    }
}
