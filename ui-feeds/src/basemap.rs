//! The basemap under the pages' unit polygons (`ui.basemap`): none (the polygons on a dark
//! ground, the default), the province's own XYZ raster tile server, or a local MBTiles file
//! served here at `/tiles/{z}/{x}/{y}.png` with caching headers. Pages learn which from the
//! `data-basemap` attribute of their `<body>`; the Content-Security-Policy lets images come
//! from the tile server's origin and nowhere else.

use std::path::PathBuf;
use std::time::Duration;

use api_error::ApiError;
use axum::extract::{Path, State};
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use serde::{Deserialize, Serialize};
use serde_json::json;
use sqlx::sqlite::{SqliteConnectOptions, SqlitePool, SqlitePoolOptions};
use sqlx::Row;

/// Which basemap the pages draw.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case", deny_unknown_fields)]
pub enum Basemap {
    /// The unit polygons on a dark ground.
    #[default]
    None,
    /// An XYZ raster tile server: `url` with `{z}`, `{x}`, `{y}` (and optionally `{s}`).
    Xyz {
        url: String,
        #[serde(default)]
        attribution: String,
        #[serde(default = "default_max_zoom")]
        max_zoom: u8,
    },
    /// A local MBTiles file, served at `/tiles/{z}/{x}/{y}.png`.
    Mbtiles {
        path: PathBuf,
        #[serde(default)]
        attribution: String,
        #[serde(default = "default_max_zoom")]
        max_zoom: u8,
    },
}

fn default_max_zoom() -> u8 {
    18
}

/// Where the tiles of an MBTiles basemap are served.
pub const TILE_PATH: &str = "/tiles/{z}/{x}/{y}.png";

impl Basemap {
    /// Checks what can be checked before starting: an XYZ template that names its
    /// coordinates and is http(s), an MBTiles file that exists.
    pub fn check(&self) -> Result<(), String> {
        match self {
            Basemap::None => Ok(()),
            Basemap::Xyz { url, .. } => {
                if !(url.starts_with("https://") || url.starts_with("http://")) {
                    return Err(format!("ui.basemap.url {url:?} must be http(s)"));
                }
                for part in ["{z}", "{x}", "{y}"] {
                    if !url.contains(part) {
                        return Err(format!("ui.basemap.url must contain {part}"));
                    }
                }
                if url.contains('"') || url.contains(';') || url.chars().any(char::is_whitespace) {
                    return Err("ui.basemap.url has a quote, ';' or a space".into());
                }
                Ok(())
            }
            Basemap::Mbtiles { path, .. } => match path.is_file() {
                true => Ok(()),
                false => Err(format!("ui.basemap.path {} is not a file", path.display())),
            },
        }
    }

    /// The origin images may come from besides the site itself (the XYZ server's), for the
    /// Content-Security-Policy.
    pub fn image_origin(&self) -> Option<String> {
        let Basemap::Xyz { url, .. } = self else {
            return None;
        };
        let (scheme, rest) = url.split_once("://")?;
        let host = rest.split('/').next()?;
        // `{s}` subdomains: any subdomain of the host's parent.
        let host = match host.split_once("{s}.") {
            Some((_, parent)) => format!("*.{parent}"),
            None => host.to_string(),
        };
        Some(format!("{scheme}://{host}"))
    }

    /// What a page needs to draw it: `{url, attribution, max_zoom}`, or `null`.
    pub fn for_page(&self) -> serde_json::Value {
        match self {
            Basemap::None => serde_json::Value::Null,
            Basemap::Xyz {
                url,
                attribution,
                max_zoom,
            } => json!({"url": url, "attribution": attribution, "max_zoom": max_zoom}),
            Basemap::Mbtiles {
                attribution,
                max_zoom,
                ..
            } => {
                json!({"url": "/tiles/{z}/{x}/{y}.png", "attribution": attribution, "max_zoom": max_zoom})
            }
        }
    }
}

/// An open MBTiles file.
#[derive(Clone)]
pub struct Tiles {
    pool: SqlitePool,
    content_type: &'static str,
}

/// A tile's answer may be cached this long by browsers and proxies (tiles change when the
/// file is replaced, which is rare; a day keeps a wall's reloads off the disk).
const TILE_MAX_AGE_S: u32 = 86_400;

impl Tiles {
    /// Opens `path` read-only and reads its tile format.
    pub async fn open(path: &std::path::Path) -> Result<Tiles, sqlx::Error> {
        let options = SqliteConnectOptions::new()
            .filename(path)
            .read_only(true)
            .immutable(true);
        let pool = SqlitePoolOptions::new()
            .max_connections(2)
            .acquire_timeout(Duration::from_secs(5))
            .connect_with(options)
            .await?;
        let format: Option<String> =
            sqlx::query_scalar("SELECT value FROM metadata WHERE name = 'format'")
                .fetch_optional(&pool)
                .await?;
        let content_type = match format.as_deref() {
            Some("jpg") | Some("jpeg") => "image/jpeg",
            Some("webp") => "image/webp",
            _ => "image/png",
        };
        Ok(Tiles { pool, content_type })
    }

    /// The tile at `z/x/y` in XYZ numbering (MBTiles rows count from the south).
    pub async fn tile(&self, z: u8, x: u32, y: u32) -> Result<Option<Vec<u8>>, sqlx::Error> {
        let row = (1u64 << z) - 1 - u64::from(y);
        let got = sqlx::query(
            "SELECT tile_data FROM tiles WHERE zoom_level = ?1 AND tile_column = ?2 AND tile_row = ?3",
        )
        .bind(i64::from(z))
        .bind(i64::from(x))
        .bind(row as i64)
        .fetch_optional(&self.pool)
        .await?;
        got.map(|r| r.try_get::<Vec<u8>, _>(0)).transpose()
    }
}

/// `GET /tiles/{z}/{x}/{y}.png`.
pub async fn tile(
    State(tiles): State<Option<Tiles>>,
    Path((z, x, file)): Path<(String, String, String)>,
) -> Response {
    let Some(tiles) = tiles else {
        return ApiError::not_found("", "this server serves no basemap tiles (ui.basemap)")
            .into_response();
    };
    let parsed = (|| {
        let z: u8 = z.parse().ok().filter(|z| *z <= 24)?;
        let x: u32 = x.parse().ok()?;
        let y: u32 = file.strip_suffix(".png")?.parse().ok()?;
        let side = 1u64 << z;
        (u64::from(x) < side && u64::from(y) < side).then_some((z, x, y))
    })();
    let Some((z, x, y)) = parsed else {
        return ApiError::bad_request(
            "",
            "a tile is /tiles/{z}/{x}/{y}.png with 0 ≤ x, y < 2^z, z ≤ 24",
        )
        .into_response();
    };
    let cache = format!("public, max-age={TILE_MAX_AGE_S}");
    match tiles.tile(z, x, y).await {
        Ok(Some(bytes)) => (
            [
                (header::CONTENT_TYPE, tiles.content_type.to_string()),
                (header::CACHE_CONTROL, cache),
            ],
            bytes,
        )
            .into_response(),
        // An empty place of the map: the browser need not ask again soon either.
        Ok(None) => (
            StatusCode::NOT_FOUND,
            [(header::CACHE_CONTROL, cache)],
            "no tile here",
        )
            .into_response(),
        Err(e) => {
            tracing::warn!(error = %e, "basemap tile not read");
            ApiError::unavailable("the basemap file could not be read".to_string(), 5)
                .into_response()
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn xyz_templates_are_checked_and_give_their_origin() {
        let ok = Basemap::Xyz {
            url: "https://{s}.tiles.haugiang.gov.vn/base/{z}/{x}/{y}.png".into(),
            attribution: "© Sở TN&MT Hậu Giang".into(),
            max_zoom: 18,
        };
        assert!(ok.check().is_ok());
        assert_eq!(
            ok.image_origin().as_deref(),
            Some("https://*.tiles.haugiang.gov.vn")
        );
        let bad = Basemap::Xyz {
            url: "https://tiles.example/{z}/{x}.png".into(),
            attribution: String::new(),
            max_zoom: 18,
        };
        assert!(bad.check().unwrap_err().contains("{y}"));
        assert_eq!(Basemap::None.for_page(), serde_json::Value::Null);
    }
}
