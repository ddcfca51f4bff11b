//! A TCP proxy on a loopback port that can partition its two sides: cut,
//! every connection through it drops and new ones are refused; healed, it
//! forwards again on the same port.

use std::net::SocketAddr;

use tokio::net::{TcpListener, TcpStream};
use tokio::task::JoinSet;

/// The proxy (see the module docs).
pub struct Proxy {
    addr: SocketAddr,
    target: SocketAddr,
    serving: Option<JoinSet<()>>,
}

impl Proxy {
    /// Forwards a free loopback port to `target`.
    pub async fn start(target: SocketAddr) -> anyhow::Result<Proxy> {
        let listener = TcpListener::bind("127.0.0.1:0").await?;
        let mut p = Proxy {
            addr: listener.local_addr()?,
            target,
            serving: None,
        };
        p.serve(listener);
        Ok(p)
    }

    /// Where to connect.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// Partitions: drops every connection and refuses new ones.
    pub async fn cut(&mut self) {
        if let Some(mut set) = self.serving.take() {
            set.shutdown().await;
        }
    }

    /// Forwards again, on the same port.
    pub async fn heal(&mut self) -> anyhow::Result<()> {
        let listener = TcpListener::bind(self.addr).await?;
        self.serve(listener);
        Ok(())
    }

    fn serve(&mut self, listener: TcpListener) {
        let target = self.target;
        let mut set = JoinSet::new();
        set.spawn(async move {
            let mut links = JoinSet::new();
            while let Ok((mut inbound, _)) = listener.accept().await {
                links.spawn(async move {
                    if let Ok(mut outbound) = TcpStream::connect(target).await {
                        let _ = tokio::io::copy_bidirectional(&mut inbound, &mut outbound).await;
                    }
                });
            }
        });
        self.serving = Some(set);
    }
}
