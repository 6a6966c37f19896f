//! What happened on the data port ([`LocalEvent`]) as the agent takes it ([`Input`]).

use control::agent::Input;
use control::protocol::{ProxyId, SourceInfo};

use crate::orders::LocalEvent;

/// The agent's input for `event`. A stream published here is announced as coming from
/// `source_name` (`--source-name`: streams of one source share a tiering, [0047]), or from the
/// stream's own name; its bitrate is not known in advance (0: the heartbeats carry the
/// measured bits/s).
pub fn input_of(event: LocalEvent, source_name: Option<&str>) -> Input {
    match event {
        LocalEvent::ViewerJoined { stream } => Input::ViewerJoined { stream },
        LocalEvent::ViewerLeft { stream } => Input::ViewerLeft { stream },
        LocalEvent::ChildJoined { stream, child } => Input::ChildJoined {
            stream,
            child: ProxyId(child),
        },
        LocalEvent::ChildLeft { stream, child } => Input::ChildLeft {
            stream,
            child: ProxyId(child),
        },
        LocalEvent::SourceStarted {
            stream,
            content_type,
        } => Input::SourceStarted {
            source: SourceInfo {
                source: source_name.unwrap_or(&stream).to_owned(),
                content_type,
                bitrate_bps: 0,
            },
            stream,
        },
        LocalEvent::SourceEnded { stream } => Input::SourceEnded { stream },
        // [0066] a parent connection that fails is a lost link, as a failed probe is.
        LocalEvent::ParentLost { stream, parent } => Input::ParentLinkLost {
            stream,
            parent: ProxyId(parent),
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn s() -> String {
        "demo".into()
    }

    #[test]
    fn every_event_has_its_input() {
        let cases = [
            (
                LocalEvent::ViewerJoined { stream: s() },
                Input::ViewerJoined { stream: s() },
            ),
            (
                LocalEvent::ViewerLeft { stream: s() },
                Input::ViewerLeft { stream: s() },
            ),
            (
                LocalEvent::ChildJoined {
                    stream: s(),
                    child: 31,
                },
                Input::ChildJoined {
                    stream: s(),
                    child: ProxyId(31),
                },
            ),
            (
                LocalEvent::ChildLeft {
                    stream: s(),
                    child: 31,
                },
                Input::ChildLeft {
                    stream: s(),
                    child: ProxyId(31),
                },
            ),
            (
                LocalEvent::SourceEnded { stream: s() },
                Input::SourceEnded { stream: s() },
            ),
            (
                LocalEvent::ParentLost {
                    stream: s(),
                    parent: 11,
                },
                Input::ParentLinkLost {
                    stream: s(),
                    parent: ProxyId(11),
                },
            ),
        ];
        for (event, input) in cases {
            assert_eq!(input_of(event, None), input);
        }
    }

    #[test]
    fn a_source_is_named_by_the_configuration_or_by_its_stream() {
        let started = || LocalEvent::SourceStarted {
            stream: s(),
            content_type: "video/mp2t".into(),
        };
        let source = |name: &str| Input::SourceStarted {
            stream: s(),
            source: SourceInfo {
                source: name.into(),
                content_type: "video/mp2t".into(),
                bitrate_bps: 0,
            },
        };
        assert_eq!(input_of(started(), None), source("demo"));
        assert_eq!(
            input_of(started(), Some("www.ccrl.com")),
            source("www.ccrl.com")
        );
    }
}
