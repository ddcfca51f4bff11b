//! MQTT clients as gateways are, for the end-to-end tests: one that
//! publishes at QoS 1 and waits for each PUBACK ([`Gateway`]), one that
//! reports how the broker answered it ([`Probe`]), one that publishes as
//! fast as acknowledged ([`Burst`]).

use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use rumqttc::{AsyncClient, Event, LastWill, MqttOptions, Outgoing, Packet, QoS};
use tokio::task::JoinHandle;

/// A gateway: a rumqttc client publishing at QoS 1.
pub struct Gateway {
    client: AsyncClient,
    acked: tokio::sync::watch::Receiver<u64>,
    poller: JoinHandle<()>,
    sent: u64,
}

impl Gateway {
    /// Connects to the broker.
    pub async fn connect(host: &str, port: u16, id: &str) -> anyhow::Result<Gateway> {
        Self::connect_with_will(host, port, id, None).await
    }

    /// Connects with a last will: `offline` on `will_topic`, which the broker
    /// publishes when the connection drops without a DISCONNECT.
    pub async fn connect_with_will(
        host: &str,
        port: u16,
        id: &str,
        will_topic: Option<&str>,
    ) -> anyhow::Result<Gateway> {
        Self::connect_as(host, port, id, None, will_topic).await
    }

    /// Connects as a registered gateway: client id and user name `id`,
    /// with its password.
    pub async fn connect_as(
        host: &str,
        port: u16,
        id: &str,
        password: Option<&str>,
        will_topic: Option<&str>,
    ) -> anyhow::Result<Gateway> {
        let mut options = MqttOptions::new(id, host, port);
        options.set_max_packet_size(1 << 20, 1 << 20);
        if let Some(p) = password {
            options.set_credentials(id, p);
        }
        if let Some(topic) = will_topic {
            options.set_last_will(LastWill::new(topic, "offline", QoS::AtLeastOnce, false));
        }
        let (client, mut eventloop) = AsyncClient::new(options, 64);
        let (tx, acked) = tokio::sync::watch::channel(0u64);
        let poller = tokio::spawn(async move {
            let mut n = 0;
            loop {
                match eventloop.poll().await {
                    Ok(Event::Incoming(Packet::PubAck(_))) => {
                        n += 1;
                        let _ = tx.send(n);
                    }
                    Ok(Event::Outgoing(Outgoing::Disconnect)) => return,
                    Ok(_) => {}
                    Err(_) => tokio::time::sleep(Duration::from_millis(100)).await,
                }
            }
        });
        Ok(Gateway {
            client,
            acked,
            poller,
            sent: 0,
        })
    }

    /// Publishes and waits for the broker's PUBACK.
    pub async fn publish(&mut self, topic: &str, payload: Vec<u8>) -> anyhow::Result<()> {
        self.client
            .publish(topic, QoS::AtLeastOnce, false, payload)
            .await?;
        self.sent += 1;
        let want = self.sent;
        tokio::time::timeout(Duration::from_secs(10), self.acked.wait_for(|&n| n >= want))
            .await
            .context("no PUBACK from the broker")??;
        Ok(())
    }

    /// Publishes a JSON batch as gateway `GW1` of `enterprise` and waits for
    /// the PUBACK.
    pub async fn publish_json(
        &mut self,
        enterprise: &str,
        readings: serde_json::Value,
    ) -> anyhow::Result<()> {
        let json = serde_json::json!({"gateway": "GW1", "readings": readings});
        self.publish(
            &format!("hw/v1/{enterprise}/GW1/telemetry"),
            serde_json::to_vec(&json)?,
        )
        .await
    }

    /// Drops the connection without a DISCONNECT, as a gateway losing power
    /// or its link does: the broker then publishes its last will.
    pub async fn cut(mut self) {
        self.poller.abort();
        let _ = (&mut self.poller).await;
    }

    /// Disconnects.
    pub async fn close(mut self) {
        let _ = self.client.disconnect().await;
        let _ = tokio::time::timeout(Duration::from_secs(2), &mut self.poller).await;
    }
}

impl Drop for Gateway {
    /// Stops the event loop: a gateway left behind must not reconnect to
    /// its port once its service is gone, where another test's service may
    /// be listening by then.
    fn drop(&mut self) {
        self.poller.abort();
    }
}

/// An MQTT client that reports how the broker answered it, for the
/// trusted-edge tests: it never reconnects, so a refusal or a
/// disconnection is seen, not hidden by a retry.
pub struct Probe {
    /// The client.
    pub client: AsyncClient,
    events: tokio::sync::mpsc::UnboundedReceiver<Result<Packet, String>>,
    poller: JoinHandle<()>,
}

/// Who a [`Probe`] claims to be.
#[derive(Debug, Clone, Default)]
pub struct Identity<'a> {
    /// MQTT client id.
    pub client_id: &'a str,
    /// User name and password.
    pub login: Option<(&'a str, &'a str)>,
    /// Last will topic (payload `offline`, or `will_payload`).
    pub will: Option<&'a str>,
    /// The last will's payload, when not `offline`.
    pub will_payload: Option<Vec<u8>>,
    /// TLS towards the broker.
    pub tls: Option<Arc<rustls::ClientConfig>>,
}

impl Probe {
    /// Connects and waits for the CONNACK: `Err` with the reason when the
    /// broker refuses or drops the connection (or TLS fails).
    pub async fn connect(host: &str, port: u16, id: Identity<'_>) -> Result<Probe, String> {
        let mut options = MqttOptions::new(id.client_id, host, port);
        options.set_max_packet_size(1 << 20, 1 << 20);
        if let Some((u, p)) = id.login {
            options.set_credentials(u, p);
        }
        if let Some(topic) = id.will {
            let payload = id.will_payload.unwrap_or_else(|| b"offline".to_vec());
            options.set_last_will(LastWill::new(topic, payload, QoS::AtLeastOnce, false));
        }
        if let Some(tls) = id.tls {
            options.set_transport(rumqttc::Transport::tls_with_config(
                rumqttc::TlsConfiguration::Rustls(tls),
            ));
        }
        let (client, mut eventloop) = AsyncClient::new(options, 64);
        let (tx, mut events) = tokio::sync::mpsc::unbounded_channel();
        let poller = tokio::spawn(async move {
            loop {
                match eventloop.poll().await {
                    Ok(Event::Incoming(p)) => {
                        if tx.send(Ok(p)).is_err() {
                            return;
                        }
                    }
                    Ok(_) => {}
                    Err(e) => {
                        let _ = tx.send(Err(e.to_string()));
                        return;
                    }
                }
            }
        });
        let answer = tokio::time::timeout(Duration::from_secs(20), events.recv()).await;
        match answer {
            Ok(Some(Ok(Packet::ConnAck(ack))))
                if ack.code == rumqttc::ConnectReturnCode::Success =>
            {
                Ok(Probe {
                    client,
                    events,
                    poller,
                })
            }
            Ok(Some(Ok(other))) => Err(format!("{other:?}")),
            Ok(Some(Err(e))) => Err(e),
            Ok(None) => Err("closed".into()),
            Err(_) => Err("no answer in 20 s".into()),
        }
    }

    /// The next packet from the broker within `limit`: `Ok(None)` when
    /// nothing came, `Err` when the connection ended.
    pub async fn next(&mut self, limit: Duration) -> Result<Option<Packet>, String> {
        match tokio::time::timeout(limit, self.events.recv()).await {
            Err(_) => Ok(None),
            Ok(None) => Err("closed".into()),
            Ok(Some(r)) => r.map(Some),
        }
    }

    /// Publishes at QoS 1 and waits for the PUBACK: `Err` when the broker
    /// disconnects instead.
    pub async fn publish(&mut self, topic: &str, payload: Vec<u8>) -> Result<(), String> {
        self.client
            .publish(topic, QoS::AtLeastOnce, false, payload)
            .await
            .map_err(|e| e.to_string())?;
        loop {
            match self.next(Duration::from_secs(10)).await? {
                Some(Packet::PubAck(_)) => return Ok(()),
                Some(_) => {}
                None => return Err("no PUBACK in 10 s".into()),
            }
        }
    }

    /// Subscribes and returns the broker's answer (the SUBACK's codes).
    pub async fn subscribe(
        &mut self,
        filter: &str,
    ) -> Result<Vec<rumqttc::SubscribeReasonCode>, String> {
        self.client
            .subscribe(filter, QoS::AtLeastOnce)
            .await
            .map_err(|e| e.to_string())?;
        loop {
            match self.next(Duration::from_secs(10)).await? {
                Some(Packet::SubAck(ack)) => return Ok(ack.return_codes),
                Some(_) => {}
                None => return Err("no SUBACK in 10 s".into()),
            }
        }
    }
}

impl Drop for Probe {
    fn drop(&mut self) {
        self.poller.abort();
    }
}

/// A gateway that publishes as fast as the broker acknowledges (QoS 1, 100
/// in flight), counting the PUBACKs: for load and backpressure tests.
pub struct Burst {
    /// The client: publish with it.
    pub client: AsyncClient,
    /// PUBACKs received.
    pub acked: Arc<std::sync::atomic::AtomicI64>,
    poller: JoinHandle<()>,
}

impl Burst {
    /// Connects anonymously as `client_id`.
    pub fn connect(host: &str, port: u16, client_id: &str) -> Burst {
        let mut options = MqttOptions::new(client_id, host, port);
        options
            .set_max_packet_size(1 << 20, 1 << 20)
            .set_inflight(100);
        let (client, mut eventloop) = AsyncClient::new(options, 1000);
        let acked = Arc::new(std::sync::atomic::AtomicI64::new(0));
        let poller = tokio::spawn({
            let acked = acked.clone();
            async move {
                loop {
                    match eventloop.poll().await {
                        Ok(Event::Incoming(Packet::PubAck(_))) => {
                            acked.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                        }
                        Ok(_) => {}
                        Err(_) => tokio::time::sleep(Duration::from_millis(50)).await,
                    }
                }
            }
        });
        Burst {
            client,
            acked,
            poller,
        }
    }

    /// PUBACKs received so far.
    pub fn acked(&self) -> i64 {
        self.acked.load(std::sync::atomic::Ordering::SeqCst)
    }
}

impl Drop for Burst {
    fn drop(&mut self) {
        self.poller.abort();
    }
}
