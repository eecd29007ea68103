//! Bridging the caller to staff when the caller's phone refuses a transfer (REFER): the server
//! calls staff itself and carries the audio between the two legs until either hangs up.

use std::time::Duration;

use tokio::sync::mpsc::error::TrySendError;

use crate::media::{CallerEvent, MediaEdge};

/// What a bridge carried, for the call's log line.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct BridgeStats {
    /// 20 ms frames from the caller to staff, and from staff to the caller.
    pub to_staff: u64,
    pub to_caller: u64,
    /// Frames dropped because a side's playback queue was full (it fell behind).
    pub dropped: u64,
    pub digits: u64,
}

/// Which side ended the bridge.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BridgeEnd {
    CallerHungUp,
    StaffHungUp,
    /// The bridge ran `max` (the call's length limit); both legs are hung up.
    TimeLimit,
}

/// Carries audio (and keypad digits) both ways until one side ends or `max` passes, then hangs
/// up the other side (or both). Audio is 20 ms of 16 kHz PCM on both edges, so frames pass as
/// they are; a frame for a side whose queue is full is dropped rather than delaying the other
/// direction.
pub async fn run(
    caller: &mut MediaEdge,
    staff: &mut MediaEdge,
    max: Duration,
) -> (BridgeEnd, BridgeStats) {
    let mut stats = BridgeStats::default();
    let deadline = tokio::time::sleep(max);
    tokio::pin!(deadline);
    let end = loop {
        tokio::select! {
            event = caller.recv() => {
                if !stats.count(pass(event, staff).await, Way::ToStaff) {
                    break BridgeEnd::CallerHungUp;
                }
            }
            event = staff.recv() => {
                if !stats.count(pass(event, caller).await, Way::ToCaller) {
                    break BridgeEnd::StaffHungUp;
                }
            }
            () = &mut deadline => break BridgeEnd::TimeLimit,
        }
    };
    match end {
        BridgeEnd::CallerHungUp => staff.hangup().await,
        BridgeEnd::StaffHungUp => caller.hangup().await,
        BridgeEnd::TimeLimit => {
            caller.hangup().await;
            staff.hangup().await;
        }
    }
    (end, stats)
}

/// What became of one event from a side.
enum Passed {
    Frame,
    /// The other side's playback queue was full.
    Dropped,
    Digit,
    /// The side has ended.
    Ended,
    /// The other side is gone (its own `Ended` event ends the bridge).
    Nowhere,
}

#[derive(Clone, Copy)]
enum Way {
    ToStaff,
    ToCaller,
}

impl BridgeStats {
    /// Counts what passed one `way`; false when that side has ended.
    fn count(&mut self, passed: Passed, way: Way) -> bool {
        match (passed, way) {
            (Passed::Frame, Way::ToStaff) => self.to_staff += 1,
            (Passed::Frame, Way::ToCaller) => self.to_caller += 1,
            (Passed::Dropped, _) => self.dropped += 1,
            (Passed::Digit, _) => self.digits += 1,
            (Passed::Nowhere, _) => {}
            (Passed::Ended, _) => return false,
        }
        true
    }
}

/// Passes one event from a side on to `to`.
async fn pass(event: Option<CallerEvent>, to: &MediaEdge) -> Passed {
    match event {
        Some(CallerEvent::Audio(frame)) => match to.play.try_send(frame) {
            Ok(()) => Passed::Frame,
            Err(TrySendError::Full(_)) => Passed::Dropped,
            Err(TrySendError::Closed(_)) => Passed::Nowhere,
        },
        Some(CallerEvent::Dtmf { digit, .. }) => {
            to.send_dtmf(digit).await;
            Passed::Digit
        }
        Some(CallerEvent::Ended) | None => Passed::Ended,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::media::{CallerSignal, DtmfSource};

    #[tokio::test]
    async fn carries_audio_and_digits_both_ways_and_hangs_up_the_other_side() {
        let (mut caller, mut caller_peer) = crate::media::edge(8, 8);
        let (mut staff, mut staff_peer) = crate::media::edge(8, 8);
        let bridge = tokio::spawn(async move {
            let r = run(&mut caller, &mut staff, Duration::from_secs(10)).await;
            (r, caller, staff)
        });
        caller_peer.audio.send(vec![1; 320]).await.unwrap();
        assert_eq!(staff_peer.play.recv().await.unwrap(), vec![1; 320]);
        staff_peer.audio.send(vec![2; 320]).await.unwrap();
        assert_eq!(caller_peer.play.recv().await.unwrap(), vec![2; 320]);
        caller_peer
            .signals
            .send(CallerSignal::Dtmf {
                digit: '5',
                source: DtmfSource::Rfc4733,
            })
            .await
            .unwrap();
        assert_eq!(
            staff_peer.control.recv().await,
            Some(crate::media::Control::Dtmf('5'))
        );
        staff_peer.signals.send(CallerSignal::Ended).await.unwrap();
        let ((end, stats), _caller, _staff) = bridge.await.unwrap();
        assert_eq!(end, BridgeEnd::StaffHungUp);
        assert_eq!(
            caller_peer.control.recv().await,
            Some(crate::media::Control::Hangup)
        );
        assert_eq!((stats.to_staff, stats.to_caller, stats.digits), (1, 1, 1));
    }

    #[tokio::test]
    async fn the_time_limit_hangs_up_both() {
        let (mut caller, mut caller_peer) = crate::media::edge(8, 8);
        let (mut staff, mut staff_peer) = crate::media::edge(8, 8);
        let (end, _) = run(&mut caller, &mut staff, Duration::from_millis(50)).await;
        assert_eq!(end, BridgeEnd::TimeLimit);
        assert_eq!(
            caller_peer.control.recv().await,
            Some(crate::media::Control::Hangup)
        );
        assert_eq!(
            staff_peer.control.recv().await,
            Some(crate::media::Control::Hangup)
        );
    }
}
