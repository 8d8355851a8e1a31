//! Decoding for images: one keyframe into one JPEG (snapshots), and a running decoder that
//! turns the compressed stream into JPEG frames at a few per second (MJPEG live view). Only
//! these decode; the camera pipeline itself never does.

use gstreamer as gst;
use gstreamer::prelude::*;
use gstreamer_app as gst_app;

/// The compressed formats a camera may send.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Codec {
    H264,
    H265,
}

impl Codec {
    pub fn from_encoding_name(name: &str) -> Option<Self> {
        match name.to_ascii_uppercase().as_str() {
            "H264" => Some(Codec::H264),
            "H265" => Some(Codec::H265),
            _ => None,
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Codec::H264 => "h264",
            Codec::H265 => "h265",
        }
    }

    pub(crate) fn depay(self) -> &'static str {
        match self {
            Codec::H264 => "rtph264depay",
            Codec::H265 => "rtph265depay",
        }
    }

    pub(crate) fn parse(self) -> &'static str {
        match self {
            Codec::H264 => "h264parse",
            Codec::H265 => "h265parse",
        }
    }

    pub(crate) fn decoder(self) -> &'static str {
        match self {
            Codec::H264 => "avdec_h264",
            Codec::H265 => "avdec_h265",
        }
    }

    /// Byte-stream access units, SPS/PPS before each keyframe: what the camera pipeline
    /// hands over, and what a decoder can start from at any keyframe.
    pub(crate) fn au_caps(self) -> gst::Caps {
        gst::Caps::builder(match self {
            Codec::H264 => "video/x-h264",
            Codec::H265 => "video/x-h265",
        })
        .field("stream-format", "byte-stream")
        .field("alignment", "au")
        .build()
    }
}

/// Does this byte-stream access unit hold a keyframe picture (H.264 IDR slice, H.265 IRAP
/// picture), not only parameter sets?
pub fn has_keyframe_picture(codec: Codec, au: &[u8]) -> bool {
    let mut i = 0;
    while i + 3 < au.len() {
        if au[i] == 0 && au[i + 1] == 0 && au[i + 2] == 1 {
            let header = au[i + 3];
            let key = match codec {
                Codec::H264 => header & 0x1F == 5,
                Codec::H265 => (16..=21).contains(&((header >> 1) & 0x3F)),
            };
            if key {
                return true;
            }
            i += 3;
        } else {
            i += 1;
        }
    }
    false
}

/// The output size for a source of `w`×`h` scaled to `width` (even height, aspect kept).
pub fn scaled(width: Option<u32>, w: u32, h: u32) -> Option<(u32, u32)> {
    let target = width?;
    if w == 0 || h == 0 {
        return None;
    }
    let th = ((f64::from(target) * f64::from(h) / f64::from(w) / 2.0).round() as u32 * 2).max(2);
    Some((target, th))
}

fn decode_chain(codec: Codec, size: Option<(u32, u32)>, quality: u32, extra: &str) -> String {
    let scale = match size {
        Some((w, h)) => format!("videoscale ! video/x-raw,width={w},height={h} ! "),
        None => String::new(),
    };
    format!(
        "{parse} ! {dec} ! {extra}videoconvert ! {scale}jpegenc quality={quality} ! appsink name=sink sync=false",
        parse = codec.parse(),
        dec = codec.decoder(),
    )
}

/// Parses `launch` into a pipeline whose source is the appsrc named `src`.
pub(crate) fn pipeline_from(launch: &str) -> Result<(gst::Pipeline, gst_app::AppSrc), String> {
    let pipeline = gst::parse::launch(launch)
        .map_err(|e| e.to_string())?
        .downcast::<gst::Pipeline>()
        .map_err(|_| "not a pipeline".to_string())?;
    let src = pipeline
        .by_name("src")
        .and_then(|e| e.downcast::<gst_app::AppSrc>().ok())
        .ok_or("no appsrc named src")?;
    Ok((pipeline, src))
}

fn appsink(pipeline: &gst::Pipeline) -> Result<gst_app::AppSink, String> {
    pipeline
        .by_name("sink")
        .and_then(|e| e.downcast::<gst_app::AppSink>().ok())
        .ok_or_else(|| "no appsink named sink".to_string())
}

/// A copy of an access unit without timestamps, for a live appsrc that stamps its own.
pub(crate) fn untimed(au: &gst::Buffer) -> gst::Buffer {
    let mut b = au.copy();
    {
        let b = b.make_mut();
        b.set_pts(gst::ClockTime::NONE);
        b.set_dts(gst::ClockTime::NONE);
    }
    b
}

/// One keyframe (with its SPS/PPS) to a JPEG of `size` (or the frame's own size).
pub fn keyframe_to_jpeg(
    codec: Codec,
    caps: &gst::Caps,
    keyframe: &gst::Buffer,
    size: Option<(u32, u32)>,
    quality: u32,
) -> Result<Vec<u8>, String> {
    let launch = format!(
        "appsrc name=src format=time ! {}",
        decode_chain(codec, size, quality, "")
    );
    let (pipeline, src) = pipeline_from(&launch)?;
    let result = (|| {
        let sink = appsink(&pipeline)?;
        src.set_caps(Some(caps));
        pipeline
            .set_state(gst::State::Playing)
            .map_err(|e| e.to_string())?;
        let mut b = keyframe.copy();
        {
            let b = b.make_mut();
            b.set_pts(gst::ClockTime::ZERO);
            b.set_dts(gst::ClockTime::ZERO);
        }
        src.push_buffer(b).map_err(|e| e.to_string())?;
        let _ = src.end_of_stream();
        let sample = sink
            .try_pull_sample(gst::ClockTime::from_seconds(5))
            .ok_or("the decoder gave no picture")?;
        let buf = sample.buffer().ok_or("empty sample")?;
        let map = buf.map_readable().map_err(|e| e.to_string())?;
        Ok(map.as_slice().to_vec())
    })();
    let _ = pipeline.set_state(gst::State::Null);
    result
}

/// A running decoder for live view: access units in, JPEG frames out at `fps`.
pub struct LiveDecoder {
    pipeline: gst::Pipeline,
    src: gst_app::AppSrc,
}

impl LiveDecoder {
    pub fn start(
        codec: Codec,
        caps: &gst::Caps,
        size: Option<(u32, u32)>,
        quality: u32,
        fps: u32,
        on_jpeg: impl Fn(Vec<u8>) + Send + Sync + 'static,
    ) -> Result<Self, String> {
        let launch = format!(
            "appsrc name=src is-live=true format=time do-timestamp=true ! {}",
            decode_chain(
                codec,
                size,
                quality,
                &format!("videorate drop-only=true max-rate={} ! ", fps.max(1))
            )
        );
        let (pipeline, src) = pipeline_from(&launch)?;
        let sink = appsink(&pipeline)?;
        src.set_caps(Some(caps));
        src.set_max_bytes(4 << 20);
        sink.set_callbacks(
            gst_app::AppSinkCallbacks::builder()
                .new_sample(move |s| {
                    let sample = s.pull_sample().map_err(|_| gst::FlowError::Eos)?;
                    if let Some(buf) = sample.buffer() {
                        if let Ok(map) = buf.map_readable() {
                            on_jpeg(map.as_slice().to_vec());
                        }
                    }
                    Ok(gst::FlowSuccess::Ok)
                })
                .build(),
        );
        pipeline
            .set_state(gst::State::Playing)
            .map_err(|e| e.to_string())?;
        Ok(Self { pipeline, src })
    }

    /// Feeds one access unit (its timestamps are replaced by the decoder's clock).
    pub fn push(&self, au: &gst::Buffer) {
        let _ = self.src.push_buffer(untimed(au));
    }
}

impl Drop for LiveDecoder {
    fn drop(&mut self) {
        let p = self.pipeline.clone();
        // Stopping a pipeline may block briefly: not on the caller's thread.
        std::thread::spawn(move || {
            let _ = p.set_state(gst::State::Null);
        });
    }
}

/// Width and height from a JPEG's start-of-frame marker; `None` if `bytes` is not a complete
/// JPEG (no SOI, no SOF, or no EOI at the end).
pub fn jpeg_dimensions(bytes: &[u8]) -> Option<(u32, u32)> {
    if !bytes.starts_with(&[0xFF, 0xD8]) || !bytes.ends_with(&[0xFF, 0xD9]) {
        return None;
    }
    let mut i = 2;
    while i + 4 <= bytes.len() {
        if bytes[i] != 0xFF {
            return None;
        }
        let marker = bytes[i + 1];
        let len = usize::from(u16::from_be_bytes([bytes[i + 2], bytes[i + 3]]));
        // SOF0..SOF15, except DHT (C4), JPG (C8) and DAC (CC).
        if (0xC0..=0xCF).contains(&marker) && ![0xC4, 0xC8, 0xCC].contains(&marker) {
            let h = u16::from_be_bytes([*bytes.get(i + 5)?, *bytes.get(i + 6)?]);
            let w = u16::from_be_bytes([*bytes.get(i + 7)?, *bytes.get(i + 8)?]);
            return Some((u32::from(w), u32::from(h)));
        }
        i += 2 + len;
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keyframes_are_told_from_parameter_sets_and_delta_frames() {
        let sps_pps = [0, 0, 0, 1, 0x67, 0x42, 0, 0, 0, 1, 0x68, 0xCE];
        let idr = [
            0, 0, 0, 1, 0x67, 0x42, 0, 0, 1, 0x68, 0xCE, 0, 0, 1, 0x65, 0x88,
        ];
        let p = [0, 0, 0, 1, 0x41, 0x9A];
        assert!(!has_keyframe_picture(Codec::H264, &sps_pps));
        assert!(has_keyframe_picture(Codec::H264, &idr));
        assert!(!has_keyframe_picture(Codec::H264, &p));
        // H.265: VPS (32) alone is not a picture, IDR_W_RADL (19) is.
        assert!(!has_keyframe_picture(Codec::H265, &[0, 0, 1, 32 << 1, 1]));
        assert!(has_keyframe_picture(Codec::H265, &[0, 0, 1, 19 << 1, 1]));
    }

    #[test]
    fn snapshot_sizes_keep_the_aspect_ratio() {
        assert_eq!(scaled(Some(320), 640, 360), Some((320, 180)));
        assert_eq!(scaled(Some(320), 1920, 1080), Some((320, 180)));
        assert_eq!(scaled(Some(300), 704, 576), Some((300, 246)));
        assert_eq!(scaled(None, 640, 360), None);
        assert_eq!(scaled(Some(320), 0, 0), None);
    }
}
