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
        allow_from: Vec::new(),
        inbound_auth: None,
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
        .map(|t| {
            // An answer copies the request's Via even where that Via is malformed.
            message::parse(&t.bytes, Framing::Datagram)
                .map(|(m, _)| m)
                .ok()
                .or_else(|| message::parse_head_only(&t.bytes))
                .unwrap()
        })
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
    let Event::IncomingCall {
        call: id, media, ..
    } = &e[0]
    else {
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
    let g722 = "v=0\r\nc=IN IP4 127.0.0.1\r\nm=audio 6000 RTP/AVP 9\r\na=rtpmap:9 G722/8000\r\n";
    ep.receive(
        &request("INVITE", "z9hG4bKinv3", 1, None, g722, "c7"),
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

/// An answered and ACKed call.
fn confirmed(ep: &mut Endpoint, now: Instant, call: &str) -> (CallId, String) {
    let (id, tag) = answered(ep, now, call);
    ep.receive(
        &request("ACK", "z9hG4bKack", 1, Some(&tag), "", call),
        CALLER.parse().unwrap(),
        Transport::Udp,
        now,
    );
    assert_eq!(ep.drain().1, vec![Event::Confirmed { call: id }]);
    (id, tag)
}

/// A NOTIFY from the transferee in the dialog, with a sipfrag body.
fn notify(branch: &str, cseq: u32, tag: &str, call: &str, event: &str, frag: &str) -> Vec<u8> {
    format!(
        "NOTIFY sip:carevoice@127.0.0.1:5060 SIP/2.0\r\nVia: SIP/2.0/UDP 127.0.0.1:5999;branch={branch}\r\nFrom: <sip:pat@127.0.0.1:5999>;tag=caller1\r\nTo: <sip:clinic@127.0.0.1:5060>;tag={tag}\r\nCall-ID: {call}\r\nCSeq: {cseq} NOTIFY\r\nEvent: {event}\r\nSubscription-State: active;expires=60\r\nContact: <sip:pat@127.0.0.1:5999>\r\nContent-Type: message/sipfrag;version=2.0\r\nContent-Length: {}\r\n\r\n{frag}",
        frag.len()
    )
    .into_bytes()
}

/// A response to our request `req` (copying its Via, From, To, Call-ID, CSeq).
fn reply_to(req: &Message, code: u16) -> Vec<u8> {
    let mut r = req.response(code, "X", Some("caller1"));
    r.push("Contact", "<sip:pat@127.0.0.1:5999>");
    r.to_bytes()
}

#[test]
fn refer_transfer_succeeds_on_sipfrag_200_and_hangs_up() {
    let now = Instant::now();
    let mut ep = endpoint(10);
    let (id, tag) = confirmed(&mut ep, now, "r1");
    ep.transfer(id, "sip:staff@127.0.0.1:5070", now).unwrap();
    let (t, e) = ep.drain();
    assert!(e.is_empty());
    assert_eq!(t.len(), 1);
    assert_eq!(t[0].to, CALLER.parse().unwrap());
    let refer = &parse_all(&t)[0];
    assert_eq!(refer.method(), Some("REFER"));
    // In the dialog: the caller's Contact as Request-URI, tags swapped, the route set.
    assert!(
        String::from_utf8_lossy(&t[0].bytes)
            .starts_with("REFER sip:pat@127.0.0.1:5999 SIP/2.0\r\n")
    );
    assert_eq!(refer.from().unwrap().tag(), Some(tag.as_str()));
    assert_eq!(refer.to().unwrap().tag(), Some("caller1"));
    assert_eq!(refer.header("Route"), Some("<sip:proxy.example;lr>"));
    assert_eq!(refer.header("Refer-To"), Some("<sip:staff@127.0.0.1:5070>"));
    assert_eq!(
        refer.header("Referred-By"),
        Some("<sip:clinic@127.0.0.1:5060>")
    );
    assert!(refer.header("Contact").is_some());
    let refer_cseq = refer.cseq().unwrap().0;
    // A second transfer while this one runs is refused without a REFER.
    assert_eq!(
        ep.transfer(id, "sip:other@127.0.0.1", now),
        Err(TransferError::InProgress)
    );
    assert!(ep.drain().0.is_empty());
    // Timer E: retransmitted after T1 until a response.
    ep.on_timeout(now + T1);
    assert_eq!(parse_all(&ep.drain().0)[0].method(), Some("REFER"));
    ep.receive(
        &reply_to(refer, 202),
        CALLER.parse().unwrap(),
        Transport::Udp,
        now + T1,
    );
    assert_eq!(ep.drain(), (vec![], vec![]));
    ep.on_timeout(now + T1 * 4);
    assert!(ep.drain().0.is_empty(), "no retransmission after the 202");
    // Progress: 200 to the NOTIFY, nothing decided yet.
    ep.receive(
        &notify(
            "z9hG4bKn1",
            2,
            &tag,
            "r1",
            &format!("refer;id={refer_cseq}"),
            "SIP/2.0 100 Trying\r\n",
        ),
        CALLER.parse().unwrap(),
        Transport::Udp,
        now + T1 * 4,
    );
    let (t, e) = ep.drain();
    assert_eq!(codes(&t), vec![200]);
    assert!(e.is_empty());
    // The target answered: 200 to the NOTIFY, transfer done, our BYE with a higher CSeq.
    ep.receive(
        &notify("z9hG4bKn2", 3, &tag, "r1", "refer", "SIP/2.0 200 OK\r\n"),
        CALLER.parse().unwrap(),
        Transport::Udp,
        now + T1 * 5,
    );
    let (t, e) = ep.drain();
    let msgs = parse_all(&t);
    assert_eq!(msgs[0].code(), Some(200));
    assert_eq!(msgs[1].method(), Some("BYE"));
    assert!(msgs[1].cseq().unwrap().0 > refer_cseq);
    assert_eq!(
        e,
        vec![
            Event::TransferDone {
                call: id,
                result: Ok(())
            },
            Event::CallEnded {
                call: id,
                reason: EndReason::LocalBye
            }
        ]
    );
}

#[test]
fn refer_refused_target_failed_and_timeouts() {
    let now = Instant::now();
    let peer: SocketAddr = CALLER.parse().unwrap();
    // The caller's UA cannot transfer: 405 to the REFER.
    let mut ep = endpoint(10);
    let (id, tag) = confirmed(&mut ep, now, "r2");
    assert_eq!(ep.transfer(id, "desk", now), Err(TransferError::BadTarget));
    assert_eq!(
        ep.transfer(id, "sip:a@b>\r\nX: y", now),
        Err(TransferError::BadTarget)
    );
    assert_eq!(ep.transfer(99, "sip:a@b", now), Err(TransferError::NoCall));
    ep.transfer(id, "sip:staff@127.0.0.1", now).unwrap();
    let refer = parse_all(&ep.drain().0).remove(0);
    ep.receive(&reply_to(&refer, 405), peer, Transport::Udp, now);
    assert_eq!(
        ep.drain().1,
        vec![Event::TransferDone {
            call: id,
            result: Err(TransferError::Refused(405))
        }]
    );
    // The call goes on; a new transfer whose target is busy.
    ep.transfer(id, "sip:staff@127.0.0.1", now).unwrap();
    let refer = parse_all(&ep.drain().0).remove(0);
    ep.receive(&reply_to(&refer, 202), peer, Transport::Udp, now);
    ep.receive(
        &notify(
            "z9hG4bKb1",
            2,
            &tag,
            "r2",
            "refer",
            "SIP/2.0 486 Busy Here\r\n",
        ),
        peer,
        Transport::Udp,
        now,
    );
    let (t, e) = ep.drain();
    assert_eq!(codes(&t), vec![200]);
    assert_eq!(
        e,
        vec![Event::TransferDone {
            call: id,
            result: Err(TransferError::TargetFailed(486))
        }]
    );
    assert_eq!(ep.active_calls(), 1);
    // A NOTIFY for another event package: 489. One outside any dialog: 481.
    ep.receive(
        &notify("z9hG4bKb2", 3, &tag, "r2", "presence", ""),
        peer,
        Transport::Udp,
        now,
    );
    assert_eq!(codes(&ep.drain().0), vec![489]);
    ep.receive(
        &notify("z9hG4bKb3", 3, "nosuchtag", "r2", "refer", ""),
        peer,
        Transport::Udp,
        now,
    );
    assert_eq!(codes(&ep.drain().0), vec![481]);
    // No answer to the REFER at all: Timer F (64*T1) fails it after retransmissions.
    ep.transfer(id, "sip:staff@127.0.0.1", now).unwrap();
    ep.drain();
    let mut at = now;
    let mut sent = 0;
    while at < now + TIMEOUT {
        at = ep.next_timeout().unwrap();
        ep.on_timeout(at);
        let (t, e) = ep.drain();
        sent += t.len();
        if !e.is_empty() {
            assert_eq!(
                e,
                vec![Event::TransferDone {
                    call: id,
                    result: Err(TransferError::Timeout)
                }]
            );
            break;
        }
    }
    assert_eq!(at, now + TIMEOUT);
    // T1, 2T1, 4T1, then every T2 until 32 s: 1+2+4 = 3.5 s, then (32-3.5)/4 -> 7 more.
    assert!((9..=11).contains(&sent), "{sent} retransmissions");
    // Accepted but no final NOTIFY: fails after TRANSFER_TIMEOUT; then the caller hangs up.
    ep.transfer(id, "sip:staff@127.0.0.1", at).unwrap();
    let refer = parse_all(&ep.drain().0).remove(0);
    ep.receive(&reply_to(&refer, 202), peer, Transport::Udp, at);
    ep.on_timeout(at + super::transfer::TRANSFER_TIMEOUT);
    assert_eq!(
        ep.drain().1,
        vec![Event::TransferDone {
            call: id,
            result: Err(TransferError::Timeout)
        }]
    );
}

#[test]
fn transferee_hanging_up_after_202_counts_as_transferred() {
    let now = Instant::now();
    let peer: SocketAddr = CALLER.parse().unwrap();
    let mut ep = endpoint(10);
    let (id, tag) = confirmed(&mut ep, now, "r3");
    ep.transfer(id, "sip:staff@127.0.0.1", now).unwrap();
    let refer = parse_all(&ep.drain().0).remove(0);
    ep.receive(&reply_to(&refer, 202), peer, Transport::Udp, now);
    ep.receive(
        &request("BYE", "z9hG4bKbye3", 5, Some(&tag), "", "r3"),
        peer,
        Transport::Udp,
        now,
    );
    let (t, e) = ep.drain();
    assert_eq!(codes(&t), vec![200]);
    assert_eq!(
        e,
        vec![
            Event::TransferDone {
                call: id,
                result: Ok(())
            },
            Event::CallEnded {
                call: id,
                reason: EndReason::RemoteBye
            }
        ]
    );
}

#[test]
fn sources_outside_the_allow_list_get_403() {
    let now = Instant::now();
    let mut ep = endpoint(10);
    ep.config.allow_from = vec![crate::sip::acl::Cidr::parse("10.0.0.0/8").unwrap()];
    let from: SocketAddr = CALLER.parse().unwrap();
    ep.receive(
        &request("INVITE", "z9hG4bKf1", 1, None, SDP, "f1"),
        from,
        Transport::Udp,
        now,
    );
    let (t, e) = ep.drain();
    assert_eq!(codes(&t), vec![403]);
    assert_eq!(e, vec![Event::Forbidden { from }]);
    assert_eq!(ep.active_calls(), 0);
    // An ACK is never answered.
    ep.receive(
        &request("ACK", "z9hG4bKf1", 1, Some("x"), "", "f1"),
        from,
        Transport::Udp,
        now,
    );
    assert!(ep.drain().0.is_empty());
    // A source inside the range gets a normal call.
    ep.receive(
        &request("INVITE", "z9hG4bKf2", 1, None, SDP, "f2"),
        "10.9.8.7:5060".parse().unwrap(),
        Transport::Udp,
        now,
    );
    assert_eq!(codes(&ep.drain().0), vec![100]);
}

/// The callee's answer to our INVITE, with its tag, Contact and Record-Route.
fn callee_reply(invite: &Message, code: u16, sdp: &str) -> Vec<u8> {
    let mut r = invite.response(code, "X", Some("callee9"));
    r.push("Contact", "<sip:desk@127.0.0.1:5070>");
    r.push("Record-Route", "<sip:p1.example;lr>, <sip:p2.example;lr>");
    if !sdp.is_empty() {
        r.push("Content-Type", "application/sdp");
        r.body = sdp.as_bytes().to_vec();
    }
    r.to_bytes()
}

#[test]
fn outbound_call_is_answered_acked_and_hung_up() {
    let now = Instant::now();
    let mut ep = endpoint(10);
    let peer: SocketAddr = "127.0.0.1:5070".parse().unwrap();
    assert_eq!(
        ep.dial(
            "desk@x",
            peer,
            Transport::Udp,
            "127.0.0.1:20002".parse().unwrap(),
            now
        ),
        Err(DialError::BadTarget)
    );
    let id = ep
        .dial(
            "sip:desk@127.0.0.1:5070",
            peer,
            Transport::Udp,
            "127.0.0.1:20002".parse().unwrap(),
            now,
        )
        .unwrap();
    let (t, _) = ep.drain();
    assert_eq!(t[0].to, peer);
    let invite = parse_all(&t).remove(0);
    assert!(
        String::from_utf8_lossy(&t[0].bytes)
            .starts_with("INVITE sip:desk@127.0.0.1:5070 SIP/2.0\r\n")
    );
    let offer = String::from_utf8_lossy(&invite.body).to_string();
    assert!(offer.contains("m=audio 20002 RTP/AVP 0 8 101"), "{offer}");
    assert!(offer.contains("a=rtpmap:8 PCMA/8000"), "{offer}");
    // Timer A: retransmitted until a provisional response.
    ep.on_timeout(now + T1);
    assert_eq!(parse_all(&ep.drain().0)[0].method(), Some("INVITE"));
    ep.receive(
        &callee_reply(&invite, 180, ""),
        peer,
        Transport::Udp,
        now + T1,
    );
    ep.on_timeout(now + T1 * 8);
    assert!(ep.drain().0.is_empty());
    // 200 with PCMA: ACK to the Contact via the reversed Record-Route, answer event.
    let answer = "v=0\r\no=- 1 1 IN IP4 127.0.0.1\r\ns=-\r\nc=IN IP4 127.0.0.1\r\nt=0 0\r\nm=audio 7000 RTP/AVP 8\r\na=rtpmap:8 PCMA/8000\r\n";
    ep.receive(
        &callee_reply(&invite, 200, answer),
        peer,
        Transport::Udp,
        now + T1 * 8,
    );
    let (t, e) = ep.drain();
    let ack = parse_all(&t).remove(0);
    assert!(
        String::from_utf8_lossy(&t[0].bytes).starts_with("ACK sip:desk@127.0.0.1:5070 SIP/2.0\r\n")
    );
    assert_eq!(ack.cseq(), Some((1, "ACK")));
    assert_eq!(ack.to().unwrap().tag(), Some("callee9"));
    let routes: Vec<_> = ack.headers_named("Route").collect();
    assert_eq!(routes, vec!["<sip:p2.example;lr>", "<sip:p1.example;lr>"]);
    let Event::OutboundAnswered { call, media } = &e[0] else {
        panic!("{e:?}")
    };
    assert_eq!(*call, id);
    assert_eq!(media.codec, sdp::Codec::Pcma);
    assert_eq!(media.remote_port, 7000);
    // A retransmitted 200 gets the same ACK again.
    ep.receive(
        &callee_reply(&invite, 200, answer),
        peer,
        Transport::Udp,
        now + T1 * 9,
    );
    assert_eq!(ep.drain().0[0].bytes, t[0].bytes);
    // Our BYE: our From tag, their To tag, CSeq 2.
    ep.hangup(id, now + T1 * 10);
    let (t, e) = ep.drain();
    let bye = parse_all(&t).remove(0);
    assert_eq!(bye.method(), Some("BYE"));
    assert_eq!(bye.cseq(), Some((2, "BYE")));
    assert_eq!(bye.to().unwrap().tag(), Some("callee9"));
    assert_eq!(bye.from().unwrap().tag(), invite.from().unwrap().tag());
    assert_eq!(
        e,
        vec![Event::CallEnded {
            call: id,
            reason: EndReason::LocalBye
        }]
    );
}

#[test]
fn outbound_call_busy_cancelled_or_unanswered() {
    let now = Instant::now();
    let peer: SocketAddr = "127.0.0.1:5070".parse().unwrap();
    let media: SocketAddr = "127.0.0.1:20002".parse().unwrap();
    let mut ep = endpoint(10);
    // 486: ACK on the INVITE's branch, call over.
    let id = ep
        .dial("sip:desk@127.0.0.1:5070", peer, Transport::Udp, media, now)
        .unwrap();
    let invite = parse_all(&ep.drain().0).remove(0);
    ep.receive(&callee_reply(&invite, 486, ""), peer, Transport::Udp, now);
    let (t, e) = ep.drain();
    let ack = parse_all(&t).remove(0);
    assert_eq!(ack.method(), Some("ACK"));
    assert_eq!(
        ack.top_via().unwrap().branch(),
        invite.top_via().unwrap().branch()
    );
    assert_eq!(
        e,
        vec![Event::CallEnded {
            call: id,
            reason: EndReason::Rejected(486)
        }]
    );
    // Hung up while ringing: CANCEL on the same branch; the 487 ends it.
    let id = ep
        .dial("sip:desk@127.0.0.1:5070", peer, Transport::Udp, media, now)
        .unwrap();
    let invite = parse_all(&ep.drain().0).remove(0);
    ep.receive(&callee_reply(&invite, 180, ""), peer, Transport::Udp, now);
    ep.hangup(id, now);
    let cancel = parse_all(&ep.drain().0).remove(0);
    assert_eq!(cancel.method(), Some("CANCEL"));
    assert_eq!(cancel.cseq(), Some((1, "CANCEL")));
    assert_eq!(
        cancel.top_via().unwrap().branch(),
        invite.top_via().unwrap().branch()
    );
    ep.receive(
        &cancel.response(200, "OK", None).to_bytes(),
        peer,
        Transport::Udp,
        now,
    );
    ep.receive(&callee_reply(&invite, 487, ""), peer, Transport::Udp, now);
    let (t, e) = ep.drain();
    assert_eq!(parse_all(&t)[0].method(), Some("ACK"));
    assert_eq!(
        e,
        vec![Event::CallEnded {
            call: id,
            reason: EndReason::LocalBye
        }]
    );
    // Nobody answers at all: Timer B ends it as 408.
    let id = ep
        .dial("sip:desk@127.0.0.1:5070", peer, Transport::Udp, media, now)
        .unwrap();
    ep.drain();
    let mut ended = None;
    let mut at = now;
    while ended.is_none() && at < now + TIMEOUT * 2 {
        at = ep.next_timeout().unwrap();
        ep.on_timeout(at);
        ended = ep
            .drain()
            .1
            .into_iter()
            .find(|e| matches!(e, Event::CallEnded { call, .. } if *call == id));
    }
    assert_eq!(
        ended,
        Some(Event::CallEnded {
            call: id,
            reason: EndReason::Rejected(408)
        })
    );
    assert_eq!(at, now + TIMEOUT);
}

#[test]
fn inbound_digest_challenge_for_unlisted_sources() {
    let now = Instant::now();
    let mut ep = endpoint(10);
    ep.config.allow_from = vec![crate::sip::acl::Cidr::parse("10.0.0.0/8").unwrap()];
    ep.config.inbound_auth = Some(InboundAuth {
        realm: "clinic".into(),
        username: "trunk".into(),
        password: "pw".into(),
    });
    let from: SocketAddr = CALLER.parse().unwrap();
    // Listed sources need no credentials.
    ep.receive(
        &request("INVITE", "z9hG4bKa0", 1, None, SDP, "a0"),
        "10.0.0.5:5060".parse().unwrap(),
        Transport::Udp,
        now,
    );
    assert_eq!(codes(&ep.drain().0), vec![100]);
    // Others get a 401 with MD5 and SHA-256 challenges.
    ep.receive(
        &request("INVITE", "z9hG4bKa1", 1, None, SDP, "a1"),
        from,
        Transport::Udp,
        now,
    );
    let r = parse_all(&ep.drain().0).remove(0);
    assert_eq!(r.code(), Some(401));
    let challenges: Vec<_> = r.headers_named("WWW-Authenticate").collect();
    assert_eq!(challenges.len(), 2);
    let ch = crate::sip::digest::Challenge::best(challenges).unwrap();
    assert_eq!(ch.algorithm, crate::sip::digest::Algorithm::Sha256);
    let with_auth = |auth: String, branch: &str| {
        let req = String::from_utf8(request("INVITE", branch, 2, None, SDP, "a1")).unwrap();
        req.replacen(
            "Max-Forwards: 70\r\n",
            &format!("Max-Forwards: 70\r\nAuthorization: {auth}\r\n"),
            1,
        )
        .into_bytes()
    };
    // Wrong password: challenged again.
    let bad = ch.authorization(
        "trunk",
        "nope",
        "INVITE",
        "sip:clinic@127.0.0.1:5060",
        1,
        "c1",
    );
    ep.receive(&with_auth(bad, "z9hG4bKa2"), from, Transport::Udp, now);
    let (t, e) = ep.drain();
    assert_eq!(codes(&t), vec![401]);
    assert_eq!(e, vec![Event::AuthFailed]);
    // Right password on that nonce: the call goes on.
    let good = ch.authorization(
        "trunk",
        "pw",
        "INVITE",
        "sip:clinic@127.0.0.1:5060",
        1,
        "c2",
    );
    ep.receive(
        &with_auth(good.clone(), "z9hG4bKa3"),
        from,
        Transport::Udp,
        now,
    );
    let (t, e) = ep.drain();
    assert_eq!(codes(&t), vec![100]);
    assert!(matches!(e[0], Event::IncomingCall { .. }));
    // A nonce works once: replaying the same credentials is challenged.
    ep.receive(&with_auth(good, "z9hG4bKa4"), from, Transport::Udp, now);
    assert_eq!(codes(&ep.drain().0), vec![401]);
}

#[test]
fn draining_refuses_new_calls_but_serves_the_call_in_progress() {
    let now = Instant::now();
    let mut ep = endpoint(10);
    let (id, tag) = answered(&mut ep, now, "d1");
    ep.start_draining();
    assert_eq!(ep.live_calls(), vec![id]);
    // A new INVITE: 503 with Retry-After, no event.
    ep.receive(
        &request("INVITE", "z9hG4bKdr2", 1, None, SDP, "d2"),
        CALLER.parse().unwrap(),
        Transport::Udp,
        now,
    );
    let (t, e) = ep.drain();
    let r = &parse_all(&t)[0];
    assert_eq!((r.code(), r.header("Retry-After")), (Some(503), Some("30")));
    assert!(e.is_empty(), "{e:?}");
    // OPTIONS still answered.
    ep.receive(
        &request("OPTIONS", "z9hG4bKdro", 1, None, "", "d3"),
        CALLER.parse().unwrap(),
        Transport::Udp,
        now,
    );
    assert_eq!(codes(&ep.drain().0), vec![200]);
    // The call in progress goes on: ACK, then the caller's BYE.
    ep.receive(
        &request("ACK", "z9hG4bKdra", 1, Some(&tag), "", "d1"),
        CALLER.parse().unwrap(),
        Transport::Udp,
        now,
    );
    assert_eq!(ep.drain().1, vec![Event::Confirmed { call: id }]);
    ep.receive(
        &request("BYE", "z9hG4bKdrb", 2, Some(&tag), "", "d1"),
        CALLER.parse().unwrap(),
        Transport::Udp,
        now,
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
    assert!(ep.live_calls().is_empty());
}

/// A request from `peer` with top Via `via` (no branch: an RFC 2543 caller).
fn request_via(
    method: &str,
    via: &str,
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
    format!(
        "{method} sip:clinic@127.0.0.1:5060 SIP/2.0\r\nVia: {via}\r\nFrom: <sip:pat@127.0.0.1>;tag=f-{call}\r\nTo: <sip:clinic@127.0.0.1:5060>{to_tag}\r\nCall-ID: {call}\r\nCSeq: {cseq} {method}\r\nContact: <sip:pat@127.0.0.1>\r\n{ct}Content-Length: {}\r\n\r\n{body}",
        body.len()
    )
    .into_bytes()
}

/// (destination, Call-ID, status) of each response sent.
fn sent(t: &[Transmit]) -> Vec<(SocketAddr, String, u16)> {
    t.iter()
        .map(|t| {
            let m = message::parse(&t.bytes, Framing::Datagram).unwrap().0;
            (t.to, m.call_id().unwrap().to_string(), m.code().unwrap())
        })
        .collect()
}

#[test]
fn concurrent_callers_each_get_only_their_own_transaction() {
    let now = Instant::now();
    let mut ep = endpoint(10);
    let peers: Vec<SocketAddr> = (0..4)
        .map(|i| format!("127.0.0.1:{}", 6001 + i).parse().unwrap())
        .collect();
    // Two RFC 2543 callers (no branch) and two RFC 3261 callers reusing one branch from
    // different sent-by addresses.
    let vias = [
        "SIP/2.0/UDP 127.0.0.1:6001".to_string(),
        "SIP/2.0/UDP 127.0.0.1:6002".to_string(),
        "SIP/2.0/UDP 127.0.0.1:6003;branch=z9hG4bKsame".to_string(),
        "SIP/2.0/UDP 127.0.0.1:6004;branch=z9hG4bKsame".to_string(),
    ];
    let calls = ["a1", "a2", "b1", "b2"];
    let mut ids = Vec::new();
    for i in 0..4 {
        ep.receive(
            &request_via("INVITE", &vias[i], 1, None, SDP, calls[i]),
            peers[i],
            Transport::Udp,
            now,
        );
        let (t, e) = ep.drain();
        assert_eq!(sent(&t), vec![(peers[i], calls[i].to_string(), 100)], "{i}");
        let [Event::IncomingCall { call, .. }] = &e[..] else {
            panic!("caller {i}: {e:?}")
        };
        ids.push(*call);
    }
    assert_eq!(ep.active_calls(), 4);
    // Answer the first of each pair; its 200 goes to that caller only.
    let mut tags = Vec::new();
    for i in [0, 2] {
        ep.accept(ids[i], "127.0.0.1:20000".parse().unwrap(), now);
        let (t, _) = ep.drain();
        assert_eq!(
            sent(&t),
            vec![
                (peers[i], calls[i].to_string(), 180),
                (peers[i], calls[i].to_string(), 200)
            ]
        );
        tags.push(to_tag(&parse_all(&t)[1]));
    }
    // Retransmitted INVITEs of the second of each pair get their own 100, not the 200.
    for i in [1, 3] {
        ep.receive(
            &request_via("INVITE", &vias[i], 1, None, SDP, calls[i]),
            peers[i],
            Transport::Udp,
            now + T1,
        );
        let (t, e) = ep.drain();
        assert_eq!(sent(&t), vec![(peers[i], calls[i].to_string(), 100)]);
        assert!(e.is_empty(), "{e:?}");
    }
    // CANCEL from the second 3261 caller cancels its call only.
    ep.receive(
        &request_via("CANCEL", &vias[3], 1, None, "", calls[3]),
        peers[3],
        Transport::Udp,
        now + T1,
    );
    let (t, e) = ep.drain();
    assert_eq!(
        sent(&t),
        vec![
            (peers[3], calls[3].to_string(), 200),
            (peers[3], calls[3].to_string(), 487)
        ]
    );
    assert_eq!(
        e,
        vec![Event::CallEnded {
            call: ids[3],
            reason: EndReason::Cancelled
        }]
    );
    // The same INVITE over another transport is another transaction.
    ep.receive(
        &request_via("INVITE", &vias[0], 1, None, SDP, calls[0]),
        peers[0],
        Transport::Tcp,
        now + T1,
    );
    let (t, e) = ep.drain();
    assert_eq!(codes(&t), vec![100]);
    assert!(matches!(&e[..], [Event::IncomingCall { .. }]), "{e:?}");
    // OPTIONS reusing one branch from two sent-by addresses: each gets its own 200.
    for i in [2, 3] {
        let opts = request_via("OPTIONS", &vias[i], 7, None, "", &format!("o{i}"));
        ep.receive(&opts, peers[i], Transport::Udp, now + T1);
        let (t, _) = ep.drain();
        assert_eq!(sent(&t), vec![(peers[i], format!("o{i}"), 200)]);
        // Its retransmission gets the same answer again.
        ep.receive(&opts, peers[i], Transport::Udp, now + T1);
        assert_eq!(sent(&ep.drain().0), vec![(peers[i], format!("o{i}"), 200)]);
    }
    // ACKs confirm their own calls; an RFC 2543 ACK is matched by its dialog too.
    for (n, i) in [0, 2].into_iter().enumerate() {
        ep.receive(
            &request_via("ACK", &vias[i], 1, Some(&tags[n]), "", calls[i]),
            peers[i],
            Transport::Udp,
            now + T1,
        );
        let (t, e) = ep.drain();
        assert!(t.is_empty());
        assert_eq!(e, vec![Event::Confirmed { call: ids[i] }]);
    }
    // The other 2543 caller is still ringing: its retransmission still gets a 100.
    ep.receive(
        &request_via("INVITE", &vias[1], 1, None, SDP, calls[1]),
        peers[1],
        Transport::Udp,
        now + T1 * 2,
    );
    assert_eq!(
        sent(&ep.drain().0),
        vec![(peers[1], calls[1].to_string(), 100)]
    );
}

#[test]
fn header_inspection_answers_416_420_415_406_and_505() {
    let now = Instant::now();
    let mut ep = endpoint(10);
    let peer: SocketAddr = CALLER.parse().unwrap();
    let mut one = |bytes: Vec<u8>| -> Message {
        ep.receive(&bytes, peer, Transport::Udp, now);
        let (t, _) = ep.drain();
        assert_eq!(t.len(), 1, "{}", String::from_utf8_lossy(&bytes));
        parse_all(&t).remove(0)
    };
    let opts = String::from_utf8(request("OPTIONS", "z9hG4bKo1", 1, None, "", "h1")).unwrap();
    let r = one(opts
        .replace("OPTIONS sip:clinic@", "OPTIONS urn:clinic@")
        .into_bytes());
    assert_eq!(r.code(), Some(416));
    let r = one(opts
        .replace("z9hG4bKo1", "z9hG4bKo2")
        .replace("Max-Forwards", "Require: foo, bar\r\nMax-Forwards")
        .into_bytes());
    assert_eq!(r.code(), Some(420));
    assert_eq!(r.header("Unsupported"), Some("foo, bar"));
    let inv = String::from_utf8(request("INVITE", "z9hG4bKi1", 1, None, SDP, "h2")).unwrap();
    let r = one(inv
        .replace("application/sdp", "application/unknownformat")
        .into_bytes());
    assert_eq!(r.code(), Some(415));
    assert_eq!(r.header("Accept"), Some("application/sdp"));
    let r = one(inv
        .replace("z9hG4bKi1", "z9hG4bKi2")
        .replace(
            "Max-Forwards",
            "Accept: text/nobodyKnowsThis\r\nMax-Forwards",
        )
        .into_bytes());
    assert_eq!(r.code(), Some(406));
    let r = one(opts.replace(" SIP/2.0\r\n", " SIP/7.0\r\n").into_bytes());
    assert_eq!(r.code(), Some(505));
    // A malformed request line still gets its 400 (the head tells where it goes).
    let r = one(opts.replace("OPTIONS sip:", "OPTIONS  sip:").into_bytes());
    assert_eq!(r.code(), Some(400));
    // Duplicated single-valued headers and disagreeing Content-Lengths: 400.
    let r = one(opts
        .replace("Call-ID: h1\r\n", "Call-ID: h1\r\nCall-ID: h9\r\n")
        .into_bytes());
    assert_eq!(r.code(), Some(400));
    let r = one(opts
        .replace(
            "Content-Length: 0\r\n",
            "Content-Length: 0\r\nContent-Length: 3\r\n",
        )
        .into_bytes());
    assert_eq!(r.code(), Some(400));
}

/// The RFC 4475 messages (tests/fixtures/rfc4475) through the core: never a panic, and the
/// answers the wire test expects for a few that only the core decides.
#[test]
fn rfc4475_fixtures_through_the_core() {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/rfc4475");
    let mut seen = 0;
    for entry in std::fs::read_dir(&dir).unwrap() {
        let path = entry.unwrap().path();
        if path.extension().is_none_or(|e| e != "sip") {
            continue;
        }
        let bytes = std::fs::read(&path).unwrap();
        let mut ep = endpoint(10);
        ep.receive(
            &bytes,
            CALLER.parse().unwrap(),
            Transport::Udp,
            Instant::now(),
        );
        let (t, _) = ep.drain();
        let name = path.file_stem().unwrap().to_str().unwrap().to_string();
        let first = parse_all(&t).first().and_then(|m| m.code());
        let want = match name.as_str() {
            "badinv01" | "multi01" | "mcl01" | "lwsstart" | "ltgtruri" => Some(400),
            "wsinv" => Some(481),
            "esc01" | "inv2543" => Some(100),
            "badvers" => Some(505),
            _ => first,
        };
        assert_eq!(first, want, "{name}");
        seen += 1;
    }
    assert_eq!(seen, 49);
}
