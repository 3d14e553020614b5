//! `carepath-smtp-sink`: an SMTP server that accepts every message and keeps none,
//! for benchmarks whose emailed notices must not wait on a slow sink (a Python
//! `aiosmtpd` takes about 70 messages a second on the benchmark machine). It speaks
//! just enough of RFC 5321 for the notifier's client: greeting, `EHLO`/`HELO`,
//! `MAIL`, `RCPT`, `DATA` up to the lone dot, `RSET`, `NOOP` and `QUIT`. Every
//! `--report-secs` it prints the messages accepted so far.
//!
//! It acknowledges every TCP segment at once (`TCP_QUICKACK`, set again after each
//! read, since the kernel clears it). The SMTP client writes a message's body and
//! its closing dot in two writes without `TCP_NODELAY`, so against a receiver that
//! delays its acknowledgements (Linux does, by up to 40 ms) every message waits for
//! that delay; a relay on another machine behaves that way, a sink for measuring the
//! sender need not.

use std::{
    sync::{
        Arc,
        atomic::{AtomicU64, Ordering},
    },
    time::Duration,
};

use clap::Parser;
use tokio::{
    io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader},
    net::{TcpListener, TcpStream},
};

/// Longest command or message line read; a longer one ends the connection.
const MAX_LINE: usize = 64 * 1024;
/// Connections served at once; more wait in the listen queue.
const MAX_CONNECTIONS: usize = 256;

#[derive(Debug, Parser)]
#[command(
    name = "carepath-smtp-sink",
    about = "Accept every SMTP message and discard it"
)]
struct Args {
    /// Address to listen on.
    #[arg(long, default_value = "127.0.0.1:2525")]
    listen: String,
    /// Seconds between two lines reporting the messages accepted; 0 for none.
    #[arg(long, default_value_t = 10)]
    report_secs: u64,
}

#[tokio::main(flavor = "current_thread")]
async fn main() -> std::io::Result<()> {
    let args = Args::parse();
    let listener = TcpListener::bind(&args.listen).await?;
    eprintln!("smtp sink listening on {}", listener.local_addr()?);
    let accepted = Arc::new(AtomicU64::new(0));
    if args.report_secs > 0 {
        let accepted = accepted.clone();
        let every = Duration::from_secs(args.report_secs);
        tokio::spawn(async move {
            loop {
                tokio::time::sleep(every).await;
                println!("messages={}", accepted.load(Ordering::Relaxed));
            }
        });
    }
    let slots = Arc::new(tokio::sync::Semaphore::new(MAX_CONNECTIONS));
    loop {
        let permit = slots
            .clone()
            .acquire_owned()
            .await
            .expect("the semaphore is never closed");
        let (stream, _) = listener.accept().await?;
        let accepted = accepted.clone();
        tokio::spawn(async move {
            let _ = session(stream, &accepted).await;
            drop(permit);
        });
    }
}

/// One SMTP session, until `QUIT`, a closed connection or an overlong line.
async fn session(stream: TcpStream, accepted: &AtomicU64) -> std::io::Result<()> {
    stream.set_nodelay(true)?;
    let (read, mut write) = stream.into_split();
    let mut read = BufReader::new(read);
    write.write_all(b"220 carepath-smtp-sink ready\r\n").await?;
    let mut line = Vec::new();
    loop {
        quick_ack(&read);
        if !read_line(&mut read, &mut line).await? {
            return Ok(());
        }
        let verb = line
            .get(..4)
            .map(|v| v.to_ascii_uppercase())
            .unwrap_or_default();
        let reply: &[u8] = match verb.as_slice() {
            b"EHLO" => b"250-carepath-smtp-sink\r\n250 8BITMIME\r\n",
            b"HELO" | b"MAIL" | b"RCPT" | b"RSET" | b"NOOP" => b"250 OK\r\n",
            b"DATA" => {
                write.write_all(b"354 end with a lone dot\r\n").await?;
                loop {
                    quick_ack(&read);
                    if !read_line(&mut read, &mut line).await? {
                        return Ok(());
                    }
                    if line.as_slice() == b"." {
                        break;
                    }
                }
                accepted.fetch_add(1, Ordering::Relaxed);
                b"250 accepted\r\n"
            }
            b"QUIT" => {
                write.write_all(b"221 bye\r\n").await?;
                return Ok(());
            }
            _ => b"502 not implemented\r\n",
        };
        write.write_all(reply).await?;
    }
}

/// Acknowledges the next segments at once; a failure only costs speed.
fn quick_ack(read: &BufReader<tokio::net::tcp::OwnedReadHalf>) {
    let stream: &TcpStream = read.get_ref().as_ref();
    let _ = socket2::SockRef::from(stream).set_tcp_quickack(true);
}

/// Reads one line without its CRLF into `line`; false at the end of the stream or
/// past [`MAX_LINE`].
async fn read_line(
    read: &mut BufReader<tokio::net::tcp::OwnedReadHalf>,
    line: &mut Vec<u8>,
) -> std::io::Result<bool> {
    line.clear();
    let n = (&mut *read)
        .take(MAX_LINE as u64)
        .read_until(b'\n', line)
        .await?;
    if n == 0 || !line.ends_with(b"\n") {
        return Ok(false);
    }
    while line.last().is_some_and(|b| *b == b'\n' || *b == b'\r') {
        line.pop();
    }
    Ok(true)
}
