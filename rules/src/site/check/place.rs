//! Where a hazard source is on the park map, and its camera feed.

use super::*;

/// Longest camera address accepted.
const MAX_URL: usize = 2_048;

impl Checker<'_> {
    /// A hazard source's map position (one frame for the whole park: the
    /// site plan or the earth) and camera address.
    pub(super) fn place(&mut self, hs: &HazardSourceSpec) -> (Option<Position>, Option<String>) {
        let id = hs.id.get_ref();
        let position = hs.position.as_ref().and_then(|p| {
            let position = self.position(id, p)?;
            let geo = matches!(position, Position::Geo { .. });
            match self.geo_map {
                Some(frame) if frame != geo => {
                    self.err(
                        p.span(),
                        format!("hazard source {id}: position"),
                        "every position of a park is on the site plan (x, y) or every one on the earth (lon, lat), not some of each".into(),
                    );
                    None
                }
                _ => {
                    self.geo_map = Some(geo);
                    Some(position)
                }
            }
        });
        let camera = hs.camera.as_ref().and_then(|c| {
            let url = c.get_ref();
            let scheme_ok = ["https://", "http://", "rtsp://"]
                .iter()
                .any(|s| url.len() > s.len() && url.starts_with(s));
            if scheme_ok && url.len() <= MAX_URL && !url.chars().any(|ch| ch.is_control() || ch.is_whitespace()) {
                Some(url.clone())
            } else {
                self.err(
                    c.span(),
                    format!("hazard source {id}: camera"),
                    format!("must be an https://, http:// or rtsp:// address of at most {MAX_URL} characters, without spaces"),
                );
                None
            }
        });
        (position, camera)
    }

    fn position(&mut self, id: &str, p: &Spanned<PositionSpec>) -> Option<Position> {
        let field = format!("hazard source {id}: position");
        let finite = |v: f64| v.is_finite();
        let why = match *p.get_ref() {
            PositionSpec {
                x: Some(x),
                y: Some(y),
                lon: None,
                lat: None,
            } if finite(x) && finite(y) => return Some(Position::Plan { x, y }),
            PositionSpec {
                x: None,
                y: None,
                lon: Some(lon),
                lat: Some(lat),
            } if (-180.0..=180.0).contains(&lon) && (-90.0..=90.0).contains(&lat) => {
                return Some(Position::Geo { lon, lat });
            }
            PositionSpec {
                x: None,
                y: None,
                lon: Some(_),
                lat: Some(_),
            } => "lon must be from -180 to 180 and lat from -90 to 90",
            _ => {
                "give `{ x = .., y = .. }` on the site plan or `{ lon = .., lat = .. }`, finite numbers, one pair only"
            }
        };
        self.err(p.span(), field, why.into());
        None
    }
}

impl Checker<'_> {
    /// The park's site plan: a readable image of a known type, not too
    /// large, with a size; every position then on it, inside it.
    pub(super) fn plan(
        &mut self,
        spec: &SiteSpec,
        enterprises: &[EnterpriseInfo],
    ) -> Option<SitePlan> {
        let p = spec.park.plan.as_ref()?;
        let span = p.span();
        let plan = p.get_ref();
        let file = self.src.beside(&plan.file);
        let field = "park: plan".to_owned();
        let why = if !(plan.width.is_finite()
            && plan.width > 0.0
            && plan.height.is_finite()
            && plan.height > 0.0)
        {
            Some("width and height must be numbers above 0".to_owned())
        } else {
            let ext = file
                .extension()
                .map(|e| e.to_string_lossy().to_ascii_lowercase())
                .unwrap_or_default();
            if !SitePlan::TYPES.iter().any(|(e, _)| *e == ext) {
                Some(format!(
                    "{}: must be an .svg, .png, .jpg or .webp drawing",
                    file.display()
                ))
            } else {
                match std::fs::metadata(&file) {
                    Err(e) => Some(format!("{}: {e}", file.display())),
                    Ok(m) if m.len() > SitePlan::MAX_BYTES => Some(format!(
                        "{}: {} bytes, more than the {} accepted",
                        file.display(),
                        m.len(),
                        SitePlan::MAX_BYTES
                    )),
                    Ok(_) => None,
                }
            }
        };
        if let Some(why) = why {
            self.err(span, field, why);
            return None;
        }
        let (w, h) = (plan.width, plan.height);
        for hs in enterprises.iter().flat_map(|e| &e.hazard_sources) {
            let inside = match hs.position {
                None => true,
                Some(Position::Plan { x, y }) => (0.0..=w).contains(&x) && (0.0..=h).contains(&y),
                Some(Position::Geo { .. }) => false,
            };
            if !inside {
                self.err(
                    span.clone(),
                    field.clone(),
                    format!(
                        "hazard source {}'s position is not on the {w} x {h} plan (x from 0 to {w}, y from 0 to {h})",
                        hs.id
                    ),
                );
            }
        }
        Some(SitePlan { file, size: (w, h) })
    }
}
