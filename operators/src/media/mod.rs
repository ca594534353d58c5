//! Clip media: what the clip stage's operators make of a kept clip's frames — encoded video
//! ([`transcode`]) and previews for the browser ([`preview`]) — and the in-memory encoders they
//! share ([`encode`]).

pub mod bench;
pub mod encode;
pub mod preview;
pub mod transcode;
