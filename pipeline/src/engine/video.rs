//! One video through the per-video plan, with a last guard against panics.

use kelp_operators::VideoContext;

/// One video through the plan (filters included). The plan already turns operator panics into
/// error rows; this is the last line of defence, so a bug anywhere costs one video, never the run.
pub fn run_video(
    plan: &kelp_operators::VideoPlan,
    video: kelp_operators::SourceVideo,
) -> VideoContext {
    let source = video.clone();
    let outcome = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| plan.run(video)));
    outcome.unwrap_or_else(|payload| {
        let what = payload
            .downcast_ref::<&str>()
            .map(|s| s.to_string())
            .or_else(|| payload.downcast_ref::<String>().cloned())
            .unwrap_or_else(|| "unknown panic".into());
        let id = kelp_operators::context::text_id(&format!("uri:{}", source.uri));
        let uri = source.uri.clone();
        let mut ctx = VideoContext::new(source, id, 0);
        ctx.fail(format!(
            "{uri}: kelp failed on this video (panicked: {what})"
        ));
        ctx
    })
}
