//! Opening a TCP connection to a subscriber's `host:port` whose name has several addresses, as
//! RFC 8305 ("Happy Eyeballs") says: the addresses in turn, the two families taking turns, each
//! attempt given [`NEXT_ADDRESS_DELAY`] alone before the next one starts beside it, the first
//! to connect winning. An address that drops the connection attempt (an IPv6 route that leads
//! nowhere, a node that is gone) then costs a quarter of a second, not the attempt's timeout at
//! every retry. hyper-util's connector, which reached `http://` subscribers before the pool of our
//! own, did the same (300 ms).

use std::future::Future;
use std::io;
use std::net::SocketAddr;
use std::time::Duration;

use futures::stream::{FuturesUnordered, StreamExt};
use tokio::net::TcpStream;

/// How long an attempt to one address goes alone before the next address is tried beside it
/// (RFC 8305's "Connection Attempt Delay", 250 ms recommended).
pub(super) const NEXT_ADDRESS_DELAY: Duration = Duration::from_millis(250);

/// A TCP connection to `address` (`host:port`), its name resolved by the system.
pub(super) async fn connect_tcp(address: &str) -> io::Result<TcpStream> {
    let addresses = tokio::net::lookup_host(address).await?.collect::<Vec<_>>();
    let count = addresses.len();
    first_to_connect(
        families_taking_turns(addresses),
        NEXT_ADDRESS_DELAY,
        TcpStream::connect,
    )
    .await
    .map_err(|error| match count {
        0 | 1 => error,
        _ => io::Error::new(
            error.kind(),
            format!("{error} (the last of its {count} addresses tried)"),
        ),
    })
}

/// The addresses in the resolver's order, the two families taking turns from the first's (RFC
/// 8305, section 4): `[v6a, v6b, v4a]` becomes `[v6a, v4a, v6b]`.
fn families_taking_turns(addresses: Vec<SocketAddr>) -> Vec<SocketAddr> {
    let Some(first) = addresses.first() else {
        return addresses;
    };
    let first_family = first.is_ipv6();
    let (mut preferred, mut other): (Vec<_>, Vec<_>) = addresses
        .into_iter()
        .partition(|address| address.is_ipv6() == first_family);
    let mut turns = Vec::with_capacity(preferred.len() + other.len());
    preferred.reverse();
    other.reverse();
    while let Some(address) = preferred.pop() {
        turns.push(address);
        turns.extend(other.pop());
    }
    turns.extend(other.into_iter().rev());
    turns
}

/// Starts `connect` on the first address, then on the next each time `delay` passes without a
/// connection or as soon as every attempt under way has failed; the first connection wins and
/// the attempts still under way are dropped. Fails with the last attempt's error once all have.
async fn first_to_connect<A, T, F, Fut>(
    addresses: Vec<A>,
    delay: Duration,
    connect: F,
) -> io::Result<T>
where
    F: Fn(A) -> Fut,
    Fut: Future<Output = io::Result<T>>,
{
    let mut waiting = addresses.into_iter();
    let mut attempts = FuturesUnordered::new();
    let mut last_error = None;
    loop {
        if attempts.is_empty() {
            match waiting.next() {
                Some(address) => attempts.push(connect(address)),
                None => {
                    return Err(last_error.unwrap_or_else(|| {
                        io::Error::new(io::ErrorKind::NotFound, "the name has no address")
                    }))
                }
            }
        }
        let next_start = tokio::time::sleep(delay);
        tokio::select! {
            Some(result) = attempts.next() => match result {
                Ok(connection) => return Ok(connection),
                Err(error) => last_error = Some(error),
            },
            () = next_start, if waiting.len() > 0 => {
                attempts.extend(waiting.next().map(&connect));
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use std::net::{Ipv4Addr, Ipv6Addr};

    use super::*;

    fn v4(last: u8) -> SocketAddr {
        SocketAddr::from((Ipv4Addr::new(10, 0, 0, last), 80))
    }

    fn v6(last: u16) -> SocketAddr {
        SocketAddr::from((Ipv6Addr::new(0xfd00, 0, 0, 0, 0, 0, 0, last), 80))
    }

    #[test]
    fn the_families_take_turns_from_the_first_addresses() {
        assert_eq!(
            families_taking_turns(vec![v6(1), v6(2), v6(3), v4(1)]),
            vec![v6(1), v4(1), v6(2), v6(3)]
        );
        assert_eq!(
            families_taking_turns(vec![v4(1), v4(2), v6(1), v6(2), v6(3)]),
            vec![v4(1), v6(1), v4(2), v6(2), v6(3)]
        );
        assert_eq!(families_taking_turns(vec![v4(1)]), vec![v4(1)]);
        assert_eq!(families_taking_turns(Vec::new()), Vec::new());
    }

    /// What each fake address does when connected to.
    #[derive(Debug, Clone, Copy, PartialEq)]
    enum Peer {
        /// Never answers (its packets go nowhere).
        Silent,
        /// Refuses at once.
        Refuses,
        /// Accepts after this long.
        Accepts(Duration),
    }

    /// Which peer connected and when, by the paused clock.
    async fn race(peers: Vec<Peer>) -> (io::Result<usize>, Duration) {
        let started = tokio::time::Instant::now();
        let racing = first_to_connect(
            peers.into_iter().enumerate().collect(),
            NEXT_ADDRESS_DELAY,
            |(index, peer)| async move {
                match peer {
                    Peer::Silent => std::future::pending().await,
                    Peer::Refuses => Err(io::Error::from(io::ErrorKind::ConnectionRefused)),
                    Peer::Accepts(after) => {
                        tokio::time::sleep(after).await;
                        Ok(index)
                    }
                }
            },
        );
        // Trying the addresses one after the other would wait on the silent one forever.
        let result = tokio::time::timeout(Duration::from_secs(60), racing)
            .await
            .expect("connected or failed within a minute");
        (result, started.elapsed())
    }

    #[tokio::test(start_paused = true)]
    async fn an_address_that_never_answers_costs_the_delay_and_no_more() {
        let (result, took) = race(vec![Peer::Silent, Peer::Accepts(Duration::ZERO)]).await;
        assert_eq!(result.unwrap(), 1);
        assert_eq!(took, NEXT_ADDRESS_DELAY);
    }

    #[tokio::test(start_paused = true)]
    async fn a_refusal_moves_on_to_the_next_address_at_once() {
        let (result, took) = race(vec![Peer::Refuses, Peer::Accepts(Duration::ZERO)]).await;
        assert_eq!(result.unwrap(), 1);
        assert_eq!(took, Duration::ZERO);
    }

    #[tokio::test(start_paused = true)]
    async fn a_slow_first_address_still_wins_when_it_answers_first() {
        let (result, took) = race(vec![
            Peer::Accepts(Duration::from_millis(300)),
            Peer::Accepts(Duration::from_secs(1)),
        ])
        .await;
        assert_eq!(result.unwrap(), 0, "the second was started, not waited for");
        assert_eq!(took, Duration::from_millis(300));
    }

    #[tokio::test(start_paused = true)]
    async fn every_address_failing_fails_with_the_last_error() {
        let (result, _) = race(vec![Peer::Refuses, Peer::Refuses]).await;
        assert_eq!(result.unwrap_err().kind(), io::ErrorKind::ConnectionRefused);
        let (result, _) = race(Vec::new()).await;
        assert_eq!(result.unwrap_err().kind(), io::ErrorKind::NotFound);
    }

    #[tokio::test]
    async fn a_name_connects_for_real() {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let accepting = tokio::spawn(async move { listener.accept().await.map(|_| ()) });
        // `localhost` may resolve to ::1 first, where nothing listens: refused, then 127.0.0.1.
        let stream = connect_tcp(&format!("localhost:{port}")).await.unwrap();
        assert_eq!(stream.peer_addr().unwrap().port(), port);
        accepting.await.unwrap().unwrap();
        let error = connect_tcp("127.0.0.1:1").await.unwrap_err();
        assert_eq!(error.kind(), io::ErrorKind::ConnectionRefused, "{error}");
    }
}
