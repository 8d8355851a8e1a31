//! HLS live view by passthrough: the camera's own H.264/H.265 access units muxed into MPEG-TS
//! segments (`hlssink2`), no decoding and no re-encoding. A camera's muxer runs only while
//! somebody fetches its playlist, and its files live in a directory of their own that goes
//! with it.

use std::path::{Path, PathBuf};

use gstreamer as gst;
use gstreamer::prelude::*;
use gstreamer_app as gst_app;

use crate::jpeg::Codec;

/// Seconds per segment (cut at the first keyframe after this).
pub const TARGET_S: u32 = 2;

pub struct HlsMuxer {
    pipeline: gst::Pipeline,
    src: gst_app::AppSrc,
    dir: PathBuf,
}

impl HlsMuxer {
    pub fn start(codec: Codec, caps: &gst::Caps, dir: PathBuf) -> Result<Self, String> {
        std::fs::create_dir_all(&dir).map_err(|e| format!("{}: {e}", dir.display()))?;
        let launch = format!(
            "appsrc name=src is-live=true format=time do-timestamp=true ! {parse} \
             ! hlssink2 name=sink target-duration={TARGET_S} max-files=8 playlist-length=6 \
               send-keyframe-requests=false",
            parse = codec.parse()
        );
        let (pipeline, src) = crate::jpeg::pipeline_from(&launch)?;
        let sink = pipeline.by_name("sink").ok_or("no hlssink2")?;
        sink.set_property(
            "location",
            dir.join("seg-%05d.ts").to_string_lossy().to_string(),
        );
        sink.set_property(
            "playlist-location",
            dir.join("live.m3u8").to_string_lossy().to_string(),
        );
        src.set_caps(Some(caps));
        src.set_max_bytes(8 << 20);
        pipeline
            .set_state(gst::State::Playing)
            .map_err(|e| e.to_string())?;
        Ok(Self { pipeline, src, dir })
    }

    /// Feeds one access unit (timestamps replaced by the muxer's clock).
    pub fn push(&self, au: &gst::Buffer) {
        let _ = self.src.push_buffer(crate::jpeg::untimed(au));
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }
}

impl Drop for HlsMuxer {
    fn drop(&mut self) {
        let (p, dir) = (self.pipeline.clone(), self.dir.clone());
        std::thread::spawn(move || {
            let _ = p.set_state(gst::State::Null);
            let _ = std::fs::remove_dir_all(dir);
        });
    }
}

pub use ::media::is_hls_file;

#[cfg(test)]
mod tests {
    use super::is_hls_file;

    #[test]
    fn only_the_muxers_own_file_names_are_served() {
        assert!(is_hls_file("live.m3u8"));
        assert!(is_hls_file("seg-00012.ts"));
        for bad in [
            "../live.m3u8",
            "seg-.ts",
            "seg-1/../x.ts",
            "seg-00012.ts.bak",
            "/etc/passwd",
            "seg-12a.ts",
        ] {
            assert!(!is_hls_file(bad), "{bad}");
        }
    }
}
