//! The control connection to the PNC: one tokio task per connection attempt that connects,
//! then reads frames (the control crate's length-prefixed bincode, [`FrameReader`]) and writes
//! the frames the link queues, and reports to the link over a channel. The link never waits on
//! the socket: a PNC that is slow, gone or hostile costs this task, not the relay.

use std::time::Duration;

use control::protocol::{FrameReader, PncMsg, ProxyMsg, encode_frame};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::sync::mpsc::{UnboundedReceiver, UnboundedSender, unbounded_channel};
use tokio::task::JoinHandle;

/// A connect that takes longer fails (the agent backs off and retries).
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
/// A frame the PNC does not take within this time closes the connection.
const WRITE_TIMEOUT: Duration = Duration::from_secs(10);

/// What a connection reports.
#[derive(Debug)]
pub enum ConnEvent {
    Connected,
    Received(PncMsg),
    /// Failed or closed, and why. Nothing follows.
    Closed(String),
}

/// One connection attempt; reports are tagged with its `id` so that those of a connection the
/// link has already dropped are told apart.
pub struct Connection {
    pub id: u64,
    frames: UnboundedSender<Vec<u8>>,
    task: JoinHandle<()>,
}

impl Connection {
    /// Connects to `addr` (`HOST:PORT`, resolved now) in the background.
    pub fn open(addr: String, id: u64, reports: UnboundedSender<(u64, ConnEvent)>) -> Self {
        let (frames, queued) = unbounded_channel();
        let task = tokio::spawn(async move {
            let why = run(&addr, id, &reports, queued).await;
            let _ = reports.send((id, ConnEvent::Closed(why)));
        });
        Connection { id, frames, task }
    }

    /// Queues `msg`; an error only if it cannot be encoded (the connection itself reports its
    /// failures).
    pub fn send(&self, msg: &ProxyMsg) -> Result<(), String> {
        let frame = encode_frame(msg).map_err(|e| e.to_string())?;
        // Fails only once the task has ended, and then it has reported why.
        let _ = self.frames.send(frame);
        Ok(())
    }
}

impl Drop for Connection {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// The connection's life; returns why it ended.
async fn run(
    addr: &str,
    id: u64,
    reports: &UnboundedSender<(u64, ConnEvent)>,
    mut queued: UnboundedReceiver<Vec<u8>>,
) -> String {
    let mut socket = match tokio::time::timeout(CONNECT_TIMEOUT, TcpStream::connect(addr)).await {
        Ok(Ok(s)) => s,
        Ok(Err(e)) => return format!("cannot connect to the PNC at {addr}: {e}"),
        Err(_) => return format!("no answer from the PNC at {addr} within {CONNECT_TIMEOUT:?}"),
    };
    // Small control messages leave at once.
    let _ = socket.set_nodelay(true);
    if reports.send((id, ConnEvent::Connected)).is_err() {
        return "the link is gone".into();
    }
    let mut reader = FrameReader::new();
    let mut buf = vec![0u8; 16 * 1024];
    loop {
        tokio::select! {
            read = socket.read(&mut buf) => {
                let n = match read {
                    Ok(0) => return "the PNC closed the connection".into(),
                    Ok(n) => n,
                    Err(e) => return format!("reading from the PNC: {e}"),
                };
                reader.push(&buf[..n]);
                loop {
                    match reader.next_msg::<PncMsg>() {
                        Ok(Some(msg)) => {
                            if reports.send((id, ConnEvent::Received(msg))).is_err() {
                                return "the link is gone".into();
                            }
                        }
                        Ok(None) => break,
                        Err(e) => return format!("bad frame from the PNC: {e}"),
                    }
                }
            }
            frame = queued.recv() => {
                let Some(frame) = frame else {
                    return "closed by the link".into();
                };
                match tokio::time::timeout(WRITE_TIMEOUT, socket.write_all(&frame)).await {
                    Ok(Ok(())) => {}
                    Ok(Err(e)) => return format!("writing to the PNC: {e}"),
                    Err(_) => return format!("the PNC took no data for {WRITE_TIMEOUT:?}"),
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use control::protocol::{PROTOCOL_VERSION, decode_frame};

    use super::*;

    #[tokio::test]
    async fn frames_go_both_ways_and_a_bad_frame_closes() {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap().to_string();
        let (tx, mut rx) = unbounded_channel();
        let conn = Connection::open(addr, 7, tx);
        let (mut pnc, _) = listener.accept().await.unwrap();
        assert!(matches!(rx.recv().await, Some((7, ConnEvent::Connected))));
        let msg = ProxyMsg::StreamEnd {
            stream: "demo".into(),
        };
        conn.send(&msg).unwrap();
        let mut got = Vec::new();
        let decoded = loop {
            let mut b = [0u8; 256];
            let n = pnc.read(&mut b).await.unwrap();
            got.extend_from_slice(&b[..n]);
            if let Some((m, _)) = decode_frame::<ProxyMsg>(&got).unwrap() {
                break m;
            }
        };
        assert_eq!(decoded, msg);
        let welcome = PncMsg::Welcome {
            version: PROTOCOL_VERSION,
            heartbeat_ms: 500,
        };
        // Split across writes: the reader waits for the whole frame.
        let frame = encode_frame(&welcome).unwrap();
        pnc.write_all(&frame[..3]).await.unwrap();
        pnc.flush().await.unwrap();
        tokio::time::sleep(Duration::from_millis(20)).await;
        pnc.write_all(&frame[3..]).await.unwrap();
        match rx.recv().await {
            Some((7, ConnEvent::Received(m))) => assert_eq!(m, welcome),
            other => panic!("{other:?}"),
        }
        // A length prefix beyond the maximum: closed with the reason.
        pnc.write_all(&u32::MAX.to_le_bytes()).await.unwrap();
        match rx.recv().await {
            Some((7, ConnEvent::Closed(why))) => assert!(why.contains("bad frame"), "{why}"),
            other => panic!("{other:?}"),
        }
    }

    #[tokio::test]
    async fn nobody_listening_is_a_closed_connection_with_the_reason() {
        let dead = {
            let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
            l.local_addr().unwrap().to_string()
        };
        let (tx, mut rx) = unbounded_channel();
        let _conn = Connection::open(dead.clone(), 1, tx);
        match rx.recv().await {
            Some((1, ConnEvent::Closed(why))) => {
                assert!(
                    why.contains("cannot connect") && why.contains(&dead),
                    "{why}"
                )
            }
            other => panic!("{other:?}"),
        }
    }
}
