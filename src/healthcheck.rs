//! `simserve healthcheck`: asks `/healthz` of the server this configuration describes and
//! turns the answer into an exit code, for container health checks (distroless images have
//! no curl).

use std::io::{Read, Write};
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr, TcpStream};
use std::time::{Duration, Instant};

/// Where to reach a server listening on `addr`: its loopback when it listens on all
/// interfaces.
fn target(addr: SocketAddr) -> SocketAddr {
    let ip = match addr.ip() {
        IpAddr::V4(ip) if ip.is_unspecified() => IpAddr::V4(Ipv4Addr::LOCALHOST),
        IpAddr::V6(ip) if ip.is_unspecified() => IpAddr::V6(Ipv6Addr::LOCALHOST),
        ip => ip,
    };
    SocketAddr::new(ip, addr.port())
}

/// `Ok` if `GET /healthz` on the server at `addr` answers 200 within `timeout`, counted
/// from the start of the probe to the answer's status line (a server that trickles its
/// answer fails it too).
pub fn probe(addr: SocketAddr, timeout: Duration) -> Result<(), String> {
    let deadline = Instant::now() + timeout;
    let target = target(addr);
    let mut stream = TcpStream::connect_timeout(&target, timeout)
        .map_err(|err| format!("cannot connect to {target}: {err}"))?;
    let io = |err: std::io::Error| format!("{target}: {err}");
    let late = || format!("{target}/healthz did not answer within {timeout:?}");
    let left = || {
        deadline
            .checked_duration_since(Instant::now())
            .filter(|left| !left.is_zero())
            .ok_or_else(late)
    };
    stream.set_write_timeout(Some(left()?)).map_err(io)?;
    stream
        .write_all(b"GET /healthz HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n")
        .map_err(io)?;
    let mut head = [0u8; 64];
    let mut read = 0;
    while read < 12 {
        stream.set_read_timeout(Some(left()?)).map_err(io)?;
        let timed_out = |err: std::io::Error| match err.kind() {
            std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut => late(),
            _ => io(err),
        };
        match stream.read(&mut head[read..]).map_err(timed_out)? {
            0 => break,
            n => read += n,
        }
    }
    let status_line = String::from_utf8_lossy(&head[..read]);
    if status_line.starts_with("HTTP/1.1 200") {
        Ok(())
    } else {
        let line = status_line.lines().next().unwrap_or_default();
        Err(format!("{target}/healthz answered {line:?}"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn servers_on_every_interface_are_probed_on_loopback() {
        let v4: SocketAddr = "0.0.0.0:8080".parse().unwrap();
        assert_eq!(target(v4), "127.0.0.1:8080".parse().unwrap());
        let v6: SocketAddr = "[::]:9000".parse().unwrap();
        assert_eq!(target(v6), "[::1]:9000".parse().unwrap());
        let given: SocketAddr = "10.1.2.3:80".parse().unwrap();
        assert_eq!(target(given), given);
    }

    #[test]
    fn a_server_that_trickles_its_answer_fails_the_probe_at_its_timeout() {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        let server = std::thread::spawn(move || {
            let (mut stream, _) = listener.accept().unwrap();
            // A byte of a 200 every 150 ms: each read is quick, the status line is not.
            for byte in b"HTTP/1.1 200 OK\r\n\r\n" {
                if stream.write_all(&[*byte]).is_err() {
                    return;
                }
                std::thread::sleep(Duration::from_millis(150));
            }
        });
        let got = probe(addr, Duration::from_millis(500));
        let err = got.unwrap_err();
        assert!(err.contains("did not answer within 500ms"), "{err}");
        server.join().unwrap();
    }

    #[test]
    fn a_port_nobody_listens_on_fails_the_probe() {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        drop(listener);
        assert!(probe(addr, Duration::from_secs(1)).is_err());
    }
}
