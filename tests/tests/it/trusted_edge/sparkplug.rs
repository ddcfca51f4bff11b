//! Sparkplug B through the embedded broker: birth, data by alias, a
//! sequence gap answered by a rebirth request, death.

use super::*;
use hazardwatch_proto::pb;
use hazardwatch_proto::sparkplug::Payload;
use hazardwatch_proto::sparkplug::payload::{Metric, metric::Value};
use prost::Message;

fn metric(name: Option<&str>, alias: u64, value: f64) -> Metric {
    Metric {
        name: name.map(Into::into),
        alias: Some(alias),
        timestamp: Some(now_ms() as u64),
        datatype: Some(10),
        value: Some(Value::DoubleValue(value)),
        ..Metric::default()
    }
}

fn payload(seq: Option<u64>, metrics: Vec<Metric>) -> Vec<u8> {
    Payload {
        timestamp: Some(now_ms() as u64),
        metrics,
        seq,
        ..Payload::default()
    }
    .encode_to_vec()
}

fn bd_seq(n: u64) -> Metric {
    Metric {
        name: Some("bdSeq".into()),
        datatype: Some(8),
        value: Some(Value::LongValue(n)),
        ..Metric::default()
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn birth_data_by_alias_a_sequence_gap_and_death_through_sparkplug_b() {
    let svc = TestService::start_text(tempfile::tempdir().unwrap(), &registered_park(false))
        .await
        .unwrap();
    let (_alarms, mut stream) = svc.subscribe_all().await.unwrap();
    let (host, port) = svc.broker();
    let mut gw = Probe::connect(
        &host,
        port,
        Identity {
            will: Some("spBv1.0/E01/NDEATH/E01-GW1"),
            will_payload: Some(payload(None, vec![bd_seq(1)])),
            ..login("E01-GW1", GW1_PASSWORD)
        },
    )
    .await
    .unwrap();
    // It may listen for its own commands, nobody else's.
    assert_eq!(
        gw.subscribe("spBv1.0/E01/NCMD/E01-GW1").await.unwrap(),
        [SubscribeReasonCode::Success(rumqttc::QoS::AtLeastOnce)]
    );
    assert_eq!(
        gw.subscribe("spBv1.0/E01/NCMD/E01-GW2").await.unwrap(),
        [SubscribeReasonCode::Failure]
    );
    // Birth: aliases and current values.
    gw.publish(
        "spBv1.0/E01/NBIRTH/E01-GW1",
        payload(
            Some(0),
            vec![
                bd_seq(1),
                metric(Some("Tanks/T101.LT"), 1, 10.0),
                metric(Some("T101.PT"), 2, 300.0),
            ],
        ),
    )
    .await
    .unwrap();
    svc.wait_for_readings(2).await.unwrap();
    // Data by alias: the level past HH.
    gw.publish(
        "spBv1.0/E01/NDATA/E01-GW1",
        payload(Some(1), vec![metric(None, 1, 19.5)]),
    )
    .await
    .unwrap();
    let hh = loop {
        let e = hazardwatch_tests::next_event(&mut stream).await.unwrap();
        if e.alarm_id == "T101.LT/HH" {
            break e;
        }
    };
    assert_eq!(hh.value, 19.5);
    // A gap in the sequence: the data is taken, the gap recorded, and
    // the gateway is asked for a rebirth on its NCMD topic.
    gw.publish(
        "spBv1.0/E01/NDATA/E01-GW1",
        payload(Some(5), vec![metric(None, 2, 310.0)]),
    )
    .await
    .unwrap();
    let rebirth = loop {
        match gw.next(Duration::from_secs(10)).await.unwrap() {
            Some(rumqttc::Packet::Publish(p)) => break p,
            Some(_) => {}
            None => panic!("no rebirth request"),
        }
    };
    assert_eq!(rebirth.topic, "spBv1.0/E01/NCMD/E01-GW1");
    let request = Payload::decode(rebirth.payload.as_ref()).unwrap();
    assert_eq!(
        request.metrics[0].name.as_deref(),
        Some("Node Control/Rebirth")
    );
    svc.wait_for_readings(4).await.unwrap();
    let quarantine = std::fs::read_to_string(&svc.running.quarantine_file).unwrap();
    assert!(quarantine.contains("sequence_gap"), "{quarantine}");
    // The link drops: the node's NDEATH (its will, with the birth's
    // bdSeq) makes its points stale and the gateway offline at once.
    let cut = now_ms();
    drop(gw);
    let mut seen = std::collections::BTreeSet::new();
    while seen.len() < 3 {
        let e = hazardwatch_tests::next_event(&mut stream).await.unwrap();
        // (Other gateways, never heard from, go offline on their own.)
        let ours = e.alarm_id.starts_with("E01-GW1/") || e.alarm_id.starts_with("T101.");
        if ours
            && e.transition == pb::Transition::Raised as i32
            && (e.kind == pb::AlarmKind::Stale as i32 || e.kind == pb::AlarmKind::Offline as i32)
        {
            assert!(e.event_time_ms >= cut - 1_000, "{e:?}");
            seen.insert(e.alarm_id);
        }
    }
    assert_eq!(
        seen.into_iter().collect::<Vec<_>>(),
        ["E01-GW1/OFFLINE", "T101.LT/STALE", "T101.PT/STALE"]
    );
}
