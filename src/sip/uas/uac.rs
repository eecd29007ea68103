//! Outbound calls (callbacks), sans-IO: an INVITE client transaction (RFC 3261 17.1.1) with
//! Timers A/B, ACK for 2xx (its own transaction, resent on 2xx retransmissions) and for errors
//! (same branch), CANCEL when hung up before the answer. Once answered the call is a dialog like
//! any inbound one: BYE, re-INVITE and REFER work on it the same way.

use std::fmt::Write as _;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use super::{
    Call, CallId, EndReason, Endpoint, Event, Purpose, Retransmit, State, TIMEOUT, Transport,
    random_token,
};
use crate::media::sdp::{self, Codec, Direction, Negotiated, Sdp};
use crate::sip::message::{Message, NameAddr, Uri, host_for_print};

/// How long the callee may ring before we give up (the call ends as `Rejected(408)`).
pub const RING_TIMEOUT: Duration = Duration::from_secs(60);

/// Why an outbound call could not be placed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DialError {
    #[error("call target is not a SIP URI")]
    BadTarget,
    #[error("too many calls")]
    Busy,
}

/// What we offer: PCMU and PCMA with telephone-event, media at `local`.
fn offer(local: SocketAddr, session_id: u64) -> String {
    let n = Negotiated {
        proto: "RTP/AVP".into(),
        srtp: None,
        codec: Codec::Pcmu,
        payload_type: 0,
        dtmf_pt: Some(101),
        remote_addr: None,
        remote_port: 0,
        direction: Direction::SendRecv,
        ptime: 20,
        rtcp_mux: false,
    };
    // The answer printer with PCMA added to the format list.
    sdp::answer(&n, local, session_id, 1)
        .replacen(" RTP/AVP 0 101", " RTP/AVP 0 8 101", 1)
        .replacen(
            "a=rtpmap:0 PCMU/8000\r\n",
            "a=rtpmap:0 PCMU/8000\r\na=rtpmap:8 PCMA/8000\r\n",
            1,
        )
}

impl Endpoint {
    /// Places a call to `target` (`sip:user@host:port`) through `peer` (the target's address,
    /// or an outbound proxy), offering media at `local_media`. The answer arrives as
    /// [`Event::OutboundAnswered`]; failure as [`Event::CallEnded`].
    pub fn dial(
        &mut self,
        target: &str,
        peer: SocketAddr,
        transport: Transport,
        local_media: SocketAddr,
        now: Instant,
    ) -> Result<CallId, DialError> {
        let uri = Uri::parse(target).ok_or(DialError::BadTarget)?;
        if !target
            .chars()
            .all(|c| c.is_ascii_graphic() && !matches!(c, '<' | '>' | '"' | ','))
            || uri.scheme == "tel"
        {
            return Err(DialError::BadTarget);
        }
        if self.active_calls() >= self.config.max_calls {
            return Err(DialError::Busy);
        }
        let via = self.via_addr(transport);
        let local_tag = random_token();
        let branch = format!("z9hG4bK{}", random_token());
        let call_id = format!("{}@carevoice", random_token());
        let session_id = u64::from_le_bytes(
            uuid::Uuid::new_v4().as_bytes()[..8]
                .try_into()
                .unwrap_or([0; 8]),
        ) >> 2;
        let mut inv = Message::request("INVITE", target);
        inv.push(
            "Via",
            format!(
                "SIP/2.0/{} {}:{};branch={branch};rport",
                transport.name(),
                host_for_print(&via.ip().to_string()),
                via.port()
            ),
        );
        inv.push("Max-Forwards", "70");
        inv.push(
            "From",
            format!(
                "<sip:carevoice@{}:{}>;tag={local_tag}",
                host_for_print(&via.ip().to_string()),
                via.port()
            ),
        );
        inv.push("To", format!("<{target}>"));
        inv.push("Call-ID", call_id.clone());
        inv.push("CSeq", "1 INVITE");
        inv.push("Contact", self.contact(transport));
        inv.push("Allow", super::ALLOW);
        inv.push("User-Agent", self.config.user_agent.clone());
        inv.push("Content-Type", "application/sdp");
        inv.body = offer(local_media, session_id).into_bytes();
        let bytes = inv.to_bytes();
        let id = self.next_id;
        self.next_id += 1;
        let placeholder = Negotiated {
            proto: "RTP/AVP".into(),
            srtp: None,
            codec: Codec::Pcmu,
            payload_type: 0,
            dtmf_pt: None,
            remote_addr: None,
            remote_port: 0,
            direction: Direction::Inactive,
            ptime: 20,
            rtcp_mux: false,
        };
        let call = Call {
            state: State::Calling,
            peer,
            transport,
            invite: inv,
            invite_branch: branch.clone(),
            invite_key: None,
            call_id: call_id.clone(),
            local_tag: local_tag.clone(),
            remote_target: target.to_string(),
            route_set: Vec::new(),
            remote_cseq: 0,
            local_cseq: 1,
            local_media: Some(local_media),
            media: placeholder,
            session_id,
            sdp_version: 1,
            last_response: None,
            reinvite_key: None,
            rung: false,
            retransmit: Some(Retransmit::invite(bytes.clone(), now, transport.reliable())),
            purge_at: None,
            transfer: None,
            uac: Some(Default::default()),
        };
        self.by_branch.insert(branch, id);
        self.by_dialog.insert((call_id, local_tag), id);
        self.calls.insert(id, call);
        self.send(peer, transport, bytes);
        Ok(id)
    }

    /// A response to one of our INVITEs (`call` found by its branch).
    pub(super) fn on_invite_response(&mut self, call: CallId, msg: &Message, now: Instant) {
        let Some(code) = msg.code() else { return };
        let Some(c) = self.calls.get_mut(&call) else {
            return;
        };
        let Some(uac) = c.uac.as_mut() else { return };
        if code < 200 {
            if c.state == State::Calling {
                // Proceeding: no more retransmissions; the callee has RING_TIMEOUT to answer.
                c.retransmit = Some(Retransmit::wait_only(Vec::new(), now, RING_TIMEOUT));
            }
            return;
        }
        if (200..300).contains(&code) {
            if c.state != State::Calling {
                // A retransmitted 2xx: our ACK got lost.
                if let Some(ack) = uac.ack.clone() {
                    let (peer, t) = (c.peer, c.transport);
                    self.send(peer, t, ack);
                }
                return;
            }
            c.retransmit = None;
            c.remote_target = msg
                .header("Contact")
                .and_then(NameAddr::parse)
                .map(|n| n.uri)
                .unwrap_or_else(|| c.remote_target.clone());
            // As UAC the route set is the Record-Route of the 2xx, reversed (RFC 3261 12.1.2).
            let mut routes: Vec<String> = msg
                .headers_named("Record-Route")
                .flat_map(crate::sip::message::split_list)
                .map(str::to_string)
                .collect();
            routes.reverse();
            c.route_set = routes;
            uac.remote = msg.header("To").map(str::to_string);
            c.state = State::Confirmed;
            let cancelled = uac.cancelled;
            let media = Sdp::parse(&msg.body).ok().and_then(|a| sdp::negotiate(&a));
            if let Some(m) = &media {
                c.media = m.clone();
            }
            let Some((ack, _)) = self.dialog_request_cseq(call, "ACK", 1) else {
                return;
            };
            let ack = ack.to_bytes();
            let Some(c) = self.calls.get_mut(&call) else {
                return;
            };
            if let Some(uac) = c.uac.as_mut() {
                uac.ack = Some(ack.clone());
            }
            let (peer, t) = (c.peer, c.transport);
            self.send(peer, t, ack);
            match media {
                Some(media) if !cancelled => {
                    self.events.push(Event::OutboundAnswered { call, media })
                }
                // Hung up meanwhile, or an answer we cannot use: end it at once.
                _ => self.hangup(call, now),
            }
            return;
        }
        // A final error: ACK on the INVITE's branch, the call is over.
        if c.state != State::Calling {
            return;
        }
        let mut ack = Message::request("ACK", &c.remote_target);
        if let Some(via) = c.invite.header("Via") {
            ack.push("Via", via.to_string());
        }
        ack.push("Max-Forwards", "70");
        ack.push(
            "From",
            c.invite.header("From").unwrap_or_default().to_string(),
        );
        ack.push("To", msg.header("To").unwrap_or_default().to_string());
        ack.push("Call-ID", c.call_id.clone());
        ack.push("CSeq", "1 ACK");
        let cancelled = uac.cancelled;
        c.state = State::Terminated;
        c.retransmit = None;
        c.purge_at = Some(now + TIMEOUT);
        let (peer, t) = (c.peer, c.transport);
        self.send(peer, t, ack.to_bytes());
        self.events.push(Event::CallEnded {
            call,
            reason: if cancelled {
                EndReason::LocalBye
            } else {
                EndReason::Rejected(code)
            },
        });
    }

    /// Hangs up an outbound call still ringing: CANCEL (RFC 3261 9.1). The INVITE's final
    /// response then ends the call.
    pub(super) fn cancel_outbound(&mut self, call: CallId, now: Instant) {
        let Some(c) = self.calls.get_mut(&call) else {
            return;
        };
        let Some(uac) = c.uac.as_mut() else { return };
        if uac.cancelled {
            return;
        }
        uac.cancelled = true;
        let mut cancel = Message::request("CANCEL", &c.remote_target);
        for name in ["Via", "From", "To", "Call-ID"] {
            if let Some(v) = c.invite.header(name) {
                cancel.push(name, v.to_string());
            }
        }
        cancel.push("Max-Forwards", "70");
        cancel.push("CSeq", "1 CANCEL");
        let bytes = cancel.to_bytes();
        let branch = c.invite_branch.clone();
        let (peer, t) = (c.peer, c.transport);
        // The CANCEL's response shares the INVITE's branch: key its transaction apart.
        let mut key = branch;
        let _ = write!(key, "/cancel");
        self.start_client(key, peer, t, bytes, Purpose::Bye, now);
    }
}
