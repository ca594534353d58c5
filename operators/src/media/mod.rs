//! Clip media: what the clip stage's operators make of a kept clip's frames — encoded video
//! ([`transcode`]) and previews for the browser ([`preview`]) — and the in-memory encoders they
//! share ([`encode`]), and the decode of one media value for the training loader ([`clip_decode`]).

pub mod bench;
pub mod clip_decode;
pub mod encode;
pub mod preview;
pub mod transcode;
