//! Report forms as they arrive: multipart parts read chunk by chunk within their limits, and
//! `application/x-www-form-urlencoded` bodies decoded with a bound on their fields.

pub(super) enum PartError {
    TooBig,
    Body(String),
}

/// One multipart part, read chunk by chunk and refused as soon as it passes `limit`.
pub(super) async fn read_part(
    f: &mut axum::extract::multipart::Field<'_>,
    limit: usize,
) -> Result<Vec<u8>, PartError> {
    let mut out = Vec::new();
    while let Some(chunk) = f
        .chunk()
        .await
        .map_err(|e| PartError::Body(e.to_string()))?
    {
        if out.len() + chunk.len() > limit {
            return Err(PartError::TooBig);
        }
        out.extend_from_slice(&chunk);
    }
    Ok(out)
}

/// A form with more than the allowed number of fields.
#[derive(Debug, PartialEq)]
pub struct TooManyFields;

/// `application/x-www-form-urlencoded` pairs (`+` is a space; bad escapes kept as sent), at
/// most `max_fields` of them: what a form costs is bounded by its size, never a multiple.
pub fn form_urlencoded(
    body: &[u8],
    max_fields: usize,
) -> Result<Vec<(String, String)>, TooManyFields> {
    fn decode(b: &[u8]) -> String {
        let mut out = Vec::with_capacity(b.len());
        let mut i = 0;
        while i < b.len() {
            match b[i] {
                b'+' => out.push(b' '),
                b'%' if i + 2 < b.len() => {
                    let hex = |c: u8| (c as char).to_digit(16);
                    match (hex(b[i + 1]), hex(b[i + 2])) {
                        (Some(h), Some(l)) => {
                            out.push((h * 16 + l) as u8);
                            i += 2;
                        }
                        _ => out.push(b'%'),
                    }
                }
                c => out.push(c),
            }
            i += 1;
        }
        String::from_utf8_lossy(&out).into_owned()
    }
    let mut pairs = Vec::new();
    for kv in body.split(|b| *b == b'&').filter(|kv| !kv.is_empty()) {
        if pairs.len() == max_fields {
            return Err(TooManyFields);
        }
        pairs.push(match kv.iter().position(|b| *b == b'=') {
            Some(eq) => (decode(&kv[..eq]), decode(&kv[eq + 1..])),
            None => (decode(kv), String::new()),
        });
    }
    Ok(pairs)
}
