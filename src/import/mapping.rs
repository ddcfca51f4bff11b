//! Which point each tag (or column) of an export is: `--map FILE`, a CSV
//! with the columns `tag` and `point`, and optionally `scale` and `offset`
//! (the value imported is `value × scale + offset`: a historian that kept
//! MPa for a point configured in kPa has scale 1000). Without a map, tags
//! are point ids.

use std::collections::HashMap;
use std::path::Path;
use std::sync::Arc;

use anyhow::Context;
use hazardwatch_proto::{Catalog, PointIdx};

/// Where a tag's values go.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Target {
    /// The point.
    pub point: PointIdx,
    /// Multiplies the value.
    pub scale: f64,
    /// Added after scaling.
    pub offset: f64,
}

impl Target {
    /// The value in the point's engineering unit.
    pub fn convert(&self, value: f64) -> f64 {
        value * self.scale + self.offset
    }
}

/// Tags to points.
#[derive(Debug, Clone)]
pub struct Mapping {
    catalog: Arc<Catalog>,
    /// `None`: tags are point ids.
    tags: Option<HashMap<String, Target>>,
}

impl Mapping {
    /// Tags are point ids of `catalog`.
    pub fn identity(catalog: Arc<Catalog>) -> Mapping {
        Mapping {
            catalog,
            tags: None,
        }
    }

    /// Reads a map file; every point it names must be in `catalog`, every
    /// tag named once.
    pub fn load(path: &Path, catalog: Arc<Catalog>) -> anyhow::Result<Mapping> {
        let file =
            std::fs::File::open(path).with_context(|| format!("--map {}", path.display()))?;
        Mapping::read(file, &path.display().to_string(), catalog)
    }

    fn read(src: impl std::io::Read, name: &str, catalog: Arc<Catalog>) -> anyhow::Result<Mapping> {
        let mut csv = csv::ReaderBuilder::new()
            .trim(csv::Trim::All)
            .from_reader(src);
        let header = csv
            .headers()
            .with_context(|| format!("{name}: reading its header"))?
            .clone();
        let column = |wanted: &str| header.iter().position(|h| h.eq_ignore_ascii_case(wanted));
        let (Some(tag_col), Some(point_col)) = (column("tag"), column("point")) else {
            anyhow::bail!(
                "{name}: the header must name the columns `tag` and `point` (and may name `scale` and `offset`); it is `{}`",
                header.iter().collect::<Vec<_>>().join(",")
            );
        };
        let (scale_col, offset_col) = (column("scale"), column("offset"));
        let mut tags = HashMap::new();
        for row in csv.records() {
            let row = row.with_context(|| format!("{name}: not CSV"))?;
            let line = row.position().map_or(0, |p| p.line());
            let at = |why: String| anyhow::anyhow!("{name}, line {line}: {why}");
            let field = |i: usize| row.get(i).unwrap_or("");
            let number = |col: Option<usize>, default: f64| -> anyhow::Result<f64> {
                let Some(text) = col.map(field).filter(|t| !t.is_empty()) else {
                    return Ok(default);
                };
                text.parse::<f64>()
                    .ok()
                    .filter(|x| x.is_finite())
                    .ok_or_else(|| at(format!("`{text}` is not a finite number")))
            };
            let (tag, point) = (field(tag_col), field(point_col));
            if tag.is_empty() {
                return Err(at("no tag".into()));
            }
            let point = catalog
                .lookup(point)
                .ok_or_else(|| at(format!("point `{point}` is not in the configuration")))?;
            let target = Target {
                point,
                scale: number(scale_col, 1.0)?,
                offset: number(offset_col, 0.0)?,
            };
            if target.scale == 0.0 {
                return Err(at(
                    "a scale of 0 would import every value as the offset".into()
                ));
            }
            if tags.insert(tag.to_owned(), target).is_some() {
                return Err(at(format!("tag `{tag}` is mapped twice")));
            }
        }
        anyhow::ensure!(!tags.is_empty(), "{name}: maps no tag");
        Ok(Mapping {
            catalog,
            tags: Some(tags),
        })
    }

    /// Where `tag`'s values go, if it is mapped.
    pub fn get(&self, tag: &str) -> Option<Target> {
        let tag = tag.trim();
        match &self.tags {
            Some(tags) => tags.get(tag).copied(),
            None => self.catalog.lookup(tag).map(|point| Target {
                point,
                scale: 1.0,
                offset: 0.0,
            }),
        }
    }

    /// The catalog the points are in.
    pub fn catalog(&self) -> &Arc<Catalog> {
        &self.catalog
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use hazardwatch_proto::{PointKind, PointMeta};

    fn catalog() -> Arc<Catalog> {
        let mut c = Catalog::default();
        for id in ["T101.TT", "T101.PT"] {
            let kind = if id.ends_with("TT") {
                PointKind::Temperature
            } else {
                PointKind::Pressure
            };
            c.insert(PointMeta::new(id, "E1", "HS1", "T101", kind, "x"));
        }
        Arc::new(c)
    }

    fn read(text: &str) -> anyhow::Result<Mapping> {
        Mapping::read(text.as_bytes(), "map.csv", catalog())
    }

    #[test]
    fn tags_map_to_points_with_scale_and_offset() -> anyhow::Result<()> {
        let m = read("tag,point,scale,offset\nFIC-1.PV , T101.TT,,\nPI_7,T101.PT,1000,-1\n")?;
        let t = m
            .get("FIC-1.PV")
            .ok_or_else(|| anyhow::anyhow!("unmapped"))?;
        assert_eq!((t.scale, t.offset, t.convert(20.0)), (1.0, 0.0, 20.0));
        let p = m.get("PI_7").ok_or_else(|| anyhow::anyhow!("unmapped"))?;
        assert_eq!(p.convert(0.25), 249.0);
        assert_eq!(m.get("T101.TT"), None, "a map replaces the point ids");
        let ident = Mapping::identity(catalog());
        assert!(ident.get(" T101.TT ").is_some() && ident.get("nope").is_none());
        Ok(())
    }

    #[test]
    fn a_bad_map_is_refused_naming_the_line() {
        for (text, says) in [
            ("name,point\na,T101.TT\n", "must name the columns"),
            (
                "tag,point\na,T999.XX\n",
                "line 2: point `T999.XX` is not in",
            ),
            (
                "tag,point\na,T101.TT\na,T101.PT\n",
                "line 3: tag `a` is mapped twice",
            ),
            ("tag,point,scale\na,T101.TT,0\n", "a scale of 0"),
            (
                "tag,point,offset\na,T101.TT,inf\n",
                "`inf` is not a finite number",
            ),
            ("tag,point\n,T101.TT\n", "no tag"),
            ("tag,point\n", "maps no tag"),
        ] {
            let err = read(text).map(|_| ()).err().map(|e| e.to_string());
            assert!(
                err.as_deref().is_some_and(|e| e.contains(says)),
                "{text:?}: {err:?}"
            );
        }
    }
}
