//! Byte-level tests of the UAS core with a fake clock.

use super::*;

const CALLER: &str = "127.0.0.1:5999";

fn endpoint(max_calls: usize) -> Endpoint {
    Endpoint::new(EndpointConfig {
        contact_addr: "127.0.0.1:5060".parse().unwrap(),
        tls_port: 5061,
        max_calls,
        retry_after_secs: 30,
        user_agent: "carevoice/test".into(),
    })
}

const SDP: &str = "v=0\r\no=- 1 1 IN IP4 127.0.0.1\r\ns=-\r\nc=IN IP4 127.0.0.1\r\nt=0 0\r\nm=audio 6000 RTP/AVP 0 101\r\na=rtpmap:101 telephone-event/8000\r\n";

fn request(
    method: &str,
    branch: &str,
    cseq: u32,
    to_tag: Option<&str>,
    body: &str,
    call: &str,
) -> Vec<u8> {
    let to_tag = to_tag.map(|t| format!(";tag={t}")).unwrap_or_default();
    let ct = if body.is_empty() {
        String::new()
    } else {
        "Content-Type: application/sdp\r\n".into()
    };
    let cseq_method = method;
    format!(
        "{method} sip:clinic@127.0.0.1:5060 SIP/2.0\r\nVia: SIP/2.0/UDP 127.0.0.1:5999;branch={branch}\r\nFrom: \"Pat\" <sip:pat@127.0.0.1:5999>;tag=caller1\r\nTo: <sip:clinic@127.0.0.1:5060>{to_tag}\r\nCall-ID: {call}\r\nCSeq: {cseq} {cseq_method}\r\nContact: <sip:pat@127.0.0.1:5999>\r\nRecord-Route: <sip:proxy.example;lr>\r\nMax-Forwards: 70\r\n{ct}Content-Length: {}\r\n\r\n{body}",
        body.len()
    )
    .into_bytes()
}

fn parse_all(t: &[Transmit]) -> Vec<Message> {
    t.iter()
        .map(|t| message::parse(&t.bytes, Framing::Datagram).unwrap().0)
        .collect()
}

fn codes(t: &[Transmit]) -> Vec<u16> {
    parse_all(t).iter().filter_map(|m| m.code()).collect()
}

fn to_tag(m: &Message) -> String {
    m.to().unwrap().tag().unwrap().to_string()
}

/// INVITE -> 100, accept -> 180 + 200 with SDP; returns the call id and our tag.
fn answered(ep: &mut Endpoint, now: Instant, call: &str) -> (CallId, String) {
    ep.receive(
        &request("INVITE", "z9hG4bKinv", 1, None, SDP, call),
        CALLER.parse().unwrap(),
        Transport::Udp,
        now,
    );
    let (t, e) = ep.drain();
    assert_eq!(codes(&t), vec![100]);
    let Event::IncomingCall { call: id, media } = &e[0] else {
        panic!("{e:?}")
    };
    assert_eq!(media.dtmf_pt, Some(101));
    ep.accept(*id, "127.0.0.1:20000".parse().unwrap(), now);
    let (t, _) = ep.drain();
    assert_eq!(codes(&t), vec![180, 200]);
    let ok = &parse_all(&t)[1];
    assert!(String::from_utf8_lossy(&ok.body).contains("m=audio 20000 RTP/AVP 0 101"));
    assert_eq!(ok.header("Record-Route"), Some("<sip:proxy.example;lr>"));
    (*id, to_tag(ok))
}

#[test]
fn invite_ack_remote_bye() {
    let now = Instant::now();
    let mut ep = endpoint(10);
    let (id, tag) = answered(&mut ep, now, "c1");
    // 200 is retransmitted (T1, 2*T1) until the ACK.
    ep.on_timeout(now + T1);
    assert_eq!(codes(&ep.drain().0), vec![200]);
    ep.on_timeout(now + T1 * 3);
    assert_eq!(codes(&ep.drain().0), vec![200]);
    ep.receive(
        &request("ACK", "z9hG4bKack", 1, Some(&tag), "", "c1"),
        CALLER.parse().unwrap(),
        Transport::Udp,
        now + T1 * 3,
    );
    let (t, e) = ep.drain();
    assert!(t.is_empty());
    assert_eq!(e, vec![Event::Confirmed { call: id }]);
    ep.on_timeout(now + T1 * 10);
    assert!(ep.drain().0.is_empty());
    ep.receive(
        &request("BYE", "z9hG4bKbye", 2, Some(&tag), "", "c1"),
        CALLER.parse().unwrap(),
        Transport::Udp,
        now + T1 * 10,
    );
    let (t, e) = ep.drain();
    assert_eq!(codes(&t), vec![200]);
    assert_eq!(
        e,
        vec![Event::CallEnded {
            call: id,
            reason: EndReason::RemoteBye
        }]
    );
    // A retransmitted BYE gets the same 200 again, without a second event.
    ep.receive(
        &request("BYE", "z9hG4bKbye", 2, Some(&tag), "", "c1"),
        CALLER.parse().unwrap(),
        Transport::Udp,
        now + T1 * 11,
    );
    let (t, e) = ep.drain();
    assert_eq!(codes(&t), vec![200]);
    assert!(e.is_empty());
    assert_eq!(ep.active_calls(), 0);
    // Everything is forgotten after the linger time.
    ep.on_timeout(now + T1 * 11 + TIMEOUT);
    assert!(ep.next_timeout().is_none());
}

#[test]
fn our_bye_has_swapped_tags_route_and_retransmits() {
    let now = Instant::now();
    let mut ep = endpoint(10);
    let (id, tag) = answered(&mut ep, now, "c2");
    ep.receive(
        &request("ACK", "z9hG4bKack", 1, Some(&tag), "", "c2"),
        CALLER.parse().unwrap(),
        Transport::Udp,
        now,
    );
    ep.drain();
    ep.hangup(id, now);
    let (t, e) = ep.drain();
    let bye = &parse_all(&t)[0];
    assert_eq!(bye.method(), Some("BYE"));
    assert_eq!(
        bye.start,
        message::StartLine::Request {
            method: "BYE".into(),
            uri: "sip:pat@127.0.0.1:5999".into()
        }
    );
    assert_eq!(bye.from().unwrap().tag(), Some(tag.as_str()));
    assert_eq!(bye.to().unwrap().tag(), Some("caller1"));
    assert_eq!(bye.cseq(), Some((2, "BYE")));
    assert_eq!(bye.header("Route"), Some("<sip:proxy.example;lr>"));
    assert_eq!(
        e,
        vec![Event::CallEnded {
            call: id,
            reason: EndReason::LocalBye
        }]
    );
    ep.on_timeout(now + T1);
    let again = ep.drain().0;
    assert_eq!(again[0].bytes, t[0].bytes);
    // The 200 for our BYE stops the retransmissions.
    let ok = bye.response(200, "OK", None).to_bytes();
    ep.receive(&ok, CALLER.parse().unwrap(), Transport::Udp, now + T1);
    ep.on_timeout(now + T1 * 3);
    assert!(ep.drain().0.is_empty());
}

#[test]
fn cancel_before_answer() {
    let now = Instant::now();
    let mut ep = endpoint(10);
    ep.receive(
        &request("INVITE", "z9hG4bKinv", 1, None, SDP, "c3"),
        CALLER.parse().unwrap(),
        Transport::Udp,
        now,
    );
    let (_, e) = ep.drain();
    let Event::IncomingCall { call: id, .. } = e[0] else {
        panic!()
    };
    ep.receive(
        &request("CANCEL", "z9hG4bKinv", 1, None, "", "c3"),
        CALLER.parse().unwrap(),
        Transport::Udp,
        now,
    );
    let (t, e) = ep.drain();
    assert_eq!(codes(&t), vec![200, 487]);
    assert_eq!(
        e,
        vec![Event::CallEnded {
            call: id,
            reason: EndReason::Cancelled
        }]
    );
    // Accepting later does nothing; the 487 is retransmitted until the ACK.
    ep.accept(id, "127.0.0.1:20000".parse().unwrap(), now);
    assert!(ep.drain().0.is_empty());
    ep.on_timeout(now + T1);
    assert_eq!(codes(&ep.drain().0), vec![487]);
    ep.receive(
        &request("ACK", "z9hG4bKinv", 1, Some("x"), "", "c3"),
        CALLER.parse().unwrap(),
        Transport::Udp,
        now + T1,
    );
    ep.on_timeout(now + T1 * 4);
    assert!(ep.drain().0.is_empty());
}

#[test]
fn reinvite_hold_and_unhold() {
    let now = Instant::now();
    let mut ep = endpoint(10);
    let (id, tag) = answered(&mut ep, now, "c4");
    ep.receive(
        &request("ACK", "z9hG4bKack", 1, Some(&tag), "", "c4"),
        CALLER.parse().unwrap(),
        Transport::Udp,
        now,
    );
    ep.drain();
    let hold = format!("{SDP}a=sendonly\r\n");
    ep.receive(
        &request("INVITE", "z9hG4bKre1", 2, Some(&tag), &hold, "c4"),
        CALLER.parse().unwrap(),
        Transport::Udp,
        now,
    );
    let (t, e) = ep.drain();
    let ok = &parse_all(&t)[0];
    assert_eq!(ok.code(), Some(200));
    let body = String::from_utf8_lossy(&ok.body).to_string();
    assert!(
        body.contains("a=recvonly") && body.contains(" 2 IN IP4"),
        "{body}"
    );
    let Event::MediaChanged { call, media } = &e[0] else {
        panic!("{e:?}")
    };
    assert_eq!((*call, media.direction), (id, sdp::Direction::RecvOnly));
    ep.receive(
        &request("ACK", "z9hG4bKack2", 2, Some(&tag), "", "c4"),
        CALLER.parse().unwrap(),
        Transport::Udp,
        now,
    );
    ep.receive(
        &request("INVITE", "z9hG4bKre2", 3, Some(&tag), SDP, "c4"),
        CALLER.parse().unwrap(),
        Transport::Udp,
        now,
    );
    let (t, e) = ep.drain();
    assert!(String::from_utf8_lossy(&parse_all(&t)[0].body).contains("a=sendrecv"));
    assert!(
        matches!(&e[0], Event::MediaChanged { media, .. } if media.direction == sdp::Direction::SendRecv)
    );
    // A re-INVITE for an unknown dialog: 481.
    ep.receive(
        &request("INVITE", "z9hG4bKre3", 4, Some("nope"), SDP, "c4"),
        CALLER.parse().unwrap(),
        Transport::Udp,
        now,
    );
    assert_eq!(codes(&ep.drain().0), vec![481]);
}

#[test]
fn busy_unacceptable_options_info_and_bad_requests() {
    let now = Instant::now();
    let mut ep = endpoint(1);
    let (id, tag) = answered(&mut ep, now, "c5");
    // Full: 503 with Retry-After.
    ep.receive(
        &request("INVITE", "z9hG4bKinv2", 1, None, SDP, "c6"),
        CALLER.parse().unwrap(),
        Transport::Udp,
        now,
    );
    let t = ep.drain().0;
    let r = &parse_all(&t)[0];
    assert_eq!((r.code(), r.header("Retry-After")), (Some(503), Some("30")));
    // No common codec: 488.
    let opus =
        "v=0\r\nc=IN IP4 127.0.0.1\r\nm=audio 6000 RTP/AVP 96\r\na=rtpmap:96 opus/48000/2\r\n";
    ep.receive(
        &request("INVITE", "z9hG4bKinv3", 1, None, opus, "c7"),
        CALLER.parse().unwrap(),
        Transport::Udp,
        now,
    );
    assert_eq!(codes(&ep.drain().0), vec![488]);
    ep.receive(
        &request("OPTIONS", "z9hG4bKo", 1, None, "", "c8"),
        CALLER.parse().unwrap(),
        Transport::Udp,
        now,
    );
    let t = ep.drain().0;
    assert_eq!(parse_all(&t)[0].header("Allow"), Some(ALLOW));
    let mut info = String::from_utf8(request("INFO", "z9hG4bKi", 2, Some(&tag), "", "c5")).unwrap();
    info = info.replace("Content-Length: 0\r\n\r\n", "Content-Type: application/dtmf-relay\r\nContent-Length: 24\r\n\r\nSignal=5\r\nDuration=160\r\n");
    ep.receive(
        info.as_bytes(),
        CALLER.parse().unwrap(),
        Transport::Udp,
        now,
    );
    let (t, e) = ep.drain();
    assert_eq!(codes(&t), vec![200]);
    assert_eq!(
        e,
        vec![Event::InfoDtmf {
            call: id,
            digit: '5'
        }]
    );
    // Missing Call-ID: 400 naming it.
    let no_call_id = String::from_utf8(request("OPTIONS", "z9hG4bKx", 1, None, "", "zz"))
        .unwrap()
        .replace("Call-ID: zz\r\n", "");
    ep.receive(
        no_call_id.as_bytes(),
        CALLER.parse().unwrap(),
        Transport::Udp,
        now,
    );
    let t = ep.drain().0;
    let r = &parse_all(&t)[0];
    assert_eq!(
        r.start,
        message::StartLine::Response {
            code: 400,
            reason: "Bad Request (malformed SIP message: missing Call-ID)".into()
        }
    );
    // Bad Content-Length: still a 400; garbage: dropped.
    let bad_len = String::from_utf8(request("OPTIONS", "z9hG4bKy", 1, None, "", "c9"))
        .unwrap()
        .replace("Content-Length: 0", "Content-Length: 999");
    ep.receive(
        bad_len.as_bytes(),
        CALLER.parse().unwrap(),
        Transport::Udp,
        now,
    );
    assert_eq!(codes(&ep.drain().0), vec![400]);
    ep.receive(
        b"\x00\x01garbage\r\n\r\n",
        CALLER.parse().unwrap(),
        Transport::Udp,
        now,
    );
    let (t, e) = ep.drain();
    assert!(t.is_empty());
    assert!(matches!(e[0], Event::BadRequest { .. }));
    // Unknown method.
    let foo = String::from_utf8(request("FOO", "z9hG4bKf", 1, None, "", "c10")).unwrap();
    ep.receive(foo.as_bytes(), CALLER.parse().unwrap(), Transport::Udp, now);
    assert_eq!(codes(&ep.drain().0), vec![501]);
}

#[test]
fn no_ack_ends_the_call_with_bye() {
    let now = Instant::now();
    let mut ep = endpoint(10);
    let (id, _) = answered(&mut ep, now, "c11");
    let mut out = Vec::new();
    let mut e = Vec::new();
    while let Some(next) = ep.next_timeout() {
        if next > now + TIMEOUT {
            break;
        }
        ep.on_timeout(next);
        let (t, ev) = ep.drain();
        out.extend(t);
        e.extend(ev);
    }
    let msgs = parse_all(&out);
    let retransmitted = msgs.iter().filter(|m| m.code() == Some(200)).count();
    assert!(retransmitted >= 6, "{retransmitted} retransmissions");
    assert_eq!(msgs.last().and_then(|m| m.method()), Some("BYE"));
    assert_eq!(
        e,
        vec![Event::CallEnded {
            call: id,
            reason: EndReason::NoAck
        }]
    );
}
