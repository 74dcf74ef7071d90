//! The `anyres_max_N` image geometry of LLaVA-OneVision / LLaDA-V: which
//! grid an image is tiled into, how it is resized and padded onto that
//! grid, how much of the grid's feature map survives unpadding, when the
//! map is shrunk to `N` tiles' worth, and so how many image features the
//! language model sees. Pure arithmetic, shared by preprocessing, the
//! feature merge and the tests.

use serde::{Deserialize, Serialize};

/// `image_grid_pinpoints` as `config.json` stores it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum GridPinpoints {
    /// `"(1x1),...,(6x6)"`: every grid from the first to the last, in tiles.
    Range(String),
    /// Explicit resolutions in pixels, `[[width, height], ...]`.
    List(Vec<[u32; 2]>),
}

impl GridPinpoints {
    /// The candidate resolutions `(width, height)` in pixels for tiles of
    /// `tile` pixels, in the reference's order (first index outer).
    pub fn resolutions(&self, tile: u32) -> Result<Vec<(u32, u32)>, String> {
        match self {
            GridPinpoints::List(list) if !list.is_empty() => {
                Ok(list.iter().map(|&[w, h]| (w, h)).collect())
            }
            GridPinpoints::List(_) => Err("image_grid_pinpoints is empty".into()),
            GridPinpoints::Range(text) => {
                let grids = parse_grids(text)?;
                let (first, last) = (grids[0], grids[grids.len() - 1]);
                let mut out = Vec::new();
                for i in first.0..=last.0 {
                    for j in first.1..=last.1 {
                        out.push((i * tile, j * tile));
                    }
                }
                if out.is_empty() {
                    return Err(format!("image_grid_pinpoints `{text}` names no grid"));
                }
                Ok(out)
            }
        }
    }
}

/// Every `(AxB)` in `text`.
fn parse_grids(text: &str) -> Result<Vec<(u32, u32)>, String> {
    let mut grids = Vec::new();
    let mut rest = text;
    while let Some(open) = rest.find('(') {
        let close = rest[open..]
            .find(')')
            .ok_or_else(|| format!("image_grid_pinpoints `{text}`: unclosed `(`"))?;
        let inner = &rest[open + 1..open + close];
        if let Some((a, b)) = inner.split_once('x') {
            if let (Ok(a), Ok(b)) = (a.trim().parse(), b.trim().parse()) {
                grids.push((a, b));
            }
        }
        rest = &rest[open + close + 1..];
    }
    if grids.is_empty() {
        return Err(format!("image_grid_pinpoints `{text}` has no `(AxB)` grid"));
    }
    Ok(grids)
}

/// The resolution an image of `size = (width, height)` is tiled at: the one
/// keeping the most of the image's pixels after an aspect-preserving
/// downscale, ties broken by the least padding (first wins on a full tie).
pub fn select_best_resolution(size: (u32, u32), candidates: &[(u32, u32)]) -> (u32, u32) {
    let (ow, oh) = (f64::from(size.0), f64::from(size.1));
    let mut best = candidates[0];
    let mut max_effective = 0u64;
    let mut min_wasted = u64::MAX;
    for &(w, h) in candidates {
        let scale = (f64::from(w) / ow).min(f64::from(h) / oh);
        let (dw, dh) = ((ow * scale) as u64, (oh * scale) as u64);
        let effective = (dw * dh).min(u64::from(size.0) * u64::from(size.1));
        let wasted = u64::from(w) * u64::from(h) - effective;
        if effective > max_effective || (effective == max_effective && wasted < min_wasted) {
            max_effective = effective;
            min_wasted = wasted;
            best = (w, h);
        }
    }
    best
}

/// Where an image of `size` lands on a `target` canvas: the resized size
/// `(width, height)` and the paste offset `(x, y)` (centred, black around).
pub fn resize_and_pad_plan(size: (u32, u32), target: (u32, u32)) -> ((u32, u32), (u32, u32)) {
    let (ow, oh) = (f64::from(size.0), f64::from(size.1));
    let (tw, th) = target;
    let scale_w = f64::from(tw) / ow;
    let scale_h = f64::from(th) / oh;
    let (nw, nh) = if scale_w < scale_h {
        (tw, ((oh * scale_w).ceil() as u32).min(th))
    } else {
        (((ow * scale_h).ceil() as u32).min(tw), th)
    };
    ((nw, nh), ((tw - nw) / 2, (th - nh) / 2))
}

/// Python's `a // b` for positive floats (CPython's `float_floor_div`),
/// which can differ from `(a / b).floor()` by one near integers.
pub fn py_floor_div(a: f64, b: f64) -> f64 {
    let m = a % b;
    let div = (a - m) / b;
    if div == 0.0 {
        return 0.0;
    }
    let mut floordiv = div.floor();
    if div - floordiv > 0.5 {
        floordiv += 1.0;
    }
    floordiv
}

/// The full geometry of one image under `anyres_max_N`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AnyresLayout {
    /// Original image size `(width, height)`.
    pub image: (u32, u32),
    /// Chosen canvas `(width, height)` in pixels.
    pub canvas: (u32, u32),
    /// Grid in tiles `(columns, rows)`.
    pub grid: (u32, u32),
    /// Features per tile side (`tile / patch`, 27 for SigLIP 384/14).
    pub unit: usize,
    /// Rows and columns of the grid feature map kept by unpadding: `(rows, cols)` and offsets.
    pub unpadded: UnpadWindow,
    /// The map's size after the `N`-tile cap (equal to `unpadded` when no shrink).
    pub merged: (usize, usize),
}

/// The part of the grid feature map that covers the image, not the padding.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct UnpadWindow {
    /// First kept row.
    pub top: usize,
    /// Kept rows.
    pub rows: usize,
    /// First kept column.
    pub left: usize,
    /// Kept columns.
    pub cols: usize,
}

/// Which rows or columns of a `height x width` feature map cover an image of
/// `size = (width, height)` (the reference's `unpad_image`).
pub fn unpad_window(size: (u32, u32), height: usize, width: usize) -> UnpadWindow {
    let (ow, oh) = (f64::from(size.0), f64::from(size.1));
    let original_aspect = ow / oh;
    let current_aspect = width as f64 / height as f64;
    if original_aspect > current_aspect {
        let scale = width as f64 / ow;
        let new_h = (oh * scale) as usize;
        let pad = (height - new_h.min(height)) / 2;
        UnpadWindow {
            top: pad,
            rows: height - 2 * pad,
            left: 0,
            cols: width,
        }
    } else {
        let scale = height as f64 / oh;
        let new_w = (ow * scale) as usize;
        let pad = (width - new_w.min(width)) / 2;
        UnpadWindow {
            top: 0,
            rows: height,
            left: pad,
            cols: width - 2 * pad,
        }
    }
}

/// The size a `rows x cols` map is shrunk to so it holds about
/// `max_tiles` tiles of `unit x unit` features (unchanged within 10%).
pub fn capped_size(rows: usize, cols: usize, unit: usize, max_tiles: usize) -> (usize, usize) {
    let times = ((rows * cols) as f64 / (max_tiles * unit * unit) as f64).sqrt();
    if times > 1.1 {
        (
            py_floor_div(rows as f64, times) as usize,
            py_floor_div(cols as f64, times) as usize,
        )
    } else {
        (rows, cols)
    }
}

impl AnyresLayout {
    /// Lays out an image of `size` for tiles of `tile` pixels split into
    /// `patch`-pixel patches, over `candidates` (from
    /// [`GridPinpoints::resolutions`]), keeping about `max_tiles` tiles.
    pub fn new(
        size: (u32, u32),
        tile: u32,
        patch: u32,
        candidates: &[(u32, u32)],
        max_tiles: usize,
    ) -> Self {
        let canvas = select_best_resolution(size, candidates);
        let grid = (canvas.0 / tile, canvas.1 / tile);
        let unit = (tile / patch) as usize;
        let unpadded = unpad_window(size, grid.1 as usize * unit, grid.0 as usize * unit);
        let merged = capped_size(unpadded.rows, unpadded.cols, unit, max_tiles);
        Self {
            image: size,
            canvas,
            grid,
            unit,
            unpadded,
            merged,
        }
    }

    /// Tiles the tower encodes: the whole image resized, then the grid.
    pub fn num_tiles(&self) -> usize {
        1 + (self.grid.0 * self.grid.1) as usize
    }

    /// Image features the LM sees: the base tile's `unit^2`, then the
    /// merged grid map row by row, each row followed by the newline vector.
    pub fn num_features(&self) -> usize {
        self.unit * self.unit + self.merged.0 * (self.merged.1 + 1)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn published() -> Vec<(u32, u32)> {
        GridPinpoints::Range("(1x1),...,(6x6)".into())
            .resolutions(384)
            .unwrap()
    }

    #[test]
    fn range_pinpoints_expand_to_every_grid_first_index_outer() {
        let r = published();
        assert_eq!(r.len(), 36);
        assert_eq!(&r[..3], &[(384, 384), (384, 768), (384, 1152)]);
        assert_eq!(r[6], (768, 384));
        assert_eq!(r[35], (2304, 2304));
        let list = GridPinpoints::List(vec![[384, 768], [768, 384]]);
        assert_eq!(list.resolutions(384).unwrap(), vec![(384, 768), (768, 384)]);
        assert!(GridPinpoints::Range("none".into())
            .resolutions(384)
            .is_err());
    }

    #[test]
    fn best_resolution_by_hand() {
        let r = published();
        // A square 384 image fits 1x1 exactly (no waste).
        assert_eq!(select_best_resolution((384, 384), &r), (384, 384));
        // 800x600: every canvas of at least 800x600 keeps all 480000 pixels;
        // 1152x768 wastes the least (884736 - 480000), less than 768x768 can hold.
        assert_eq!(select_best_resolution((800, 600), &r), (1152, 768));
        // A tall 300x900 image: 384x1152 holds it at scale 1.28 (all pixels), least waste.
        assert_eq!(select_best_resolution((300, 900), &r), (384, 1152));
    }

    #[test]
    fn resize_and_pad_by_hand() {
        // 800x600 onto 1152x768: height-bound, scale 1.28 -> 1024x768, centred at x = 64.
        assert_eq!(
            resize_and_pad_plan((800, 600), (1152, 768)),
            ((1024, 768), (64, 0))
        );
        // 300x900 onto 384x1152: scale 1.28 both ways -> exact fit.
        assert_eq!(
            resize_and_pad_plan((300, 900), (384, 1152)),
            ((384, 1152), (0, 0))
        );
    }

    #[test]
    fn unpad_by_hand() {
        // 800x600 on a 54x81 map: aspect 1.333 < 81/54 = 1.5, so columns are
        // cut: new_w = int(800 * 54/600) = 72, pad (81 - 72) // 2 = 4 -> 73 kept.
        let w = unpad_window((800, 600), 54, 81);
        assert_eq!(
            w,
            UnpadWindow {
                top: 0,
                rows: 54,
                left: 4,
                cols: 73
            }
        );
        // A wide image on a square map cuts rows: 400x200 on 27x27 -> new_h 13, pad 7.
        let w = unpad_window((400, 200), 27, 27);
        assert_eq!((w.top, w.rows, w.cols), (7, 13, 27));
    }

    #[test]
    fn python_floor_division() {
        assert_eq!(py_floor_div(7.0, 2.0), 3.0);
        assert_eq!(py_floor_div(54.0, 1.2), 45.0);
        assert_eq!(py_floor_div(1.0, 0.1), 9.0); // Python: 1 // 0.1 == 9.0
    }

    /// Feature counts for several sizes, each worked out by hand from the rules.
    #[test]
    fn feature_counts_by_hand() {
        let r = published();
        let count = |w, h| AnyresLayout::new((w, h), 384, 14, &r, 4);
        // 384x384: 1x1 grid, nothing to unpad, no shrink: 729 + 27 * 28.
        let l = count(384, 384);
        assert_eq!((l.grid, l.num_tiles()), ((1, 1), 2));
        assert_eq!(l.num_features(), 729 + 27 * 28);
        // 800x600: 3x2 grid (54x81 map), unpad to 54x73; times =
        // sqrt(3942 / 2916) = 1.163 > 1.1 -> 54 // 1.163 = 46, 73 // 1.163 = 62.
        let l = count(800, 600);
        assert_eq!((l.grid, l.num_tiles()), ((3, 2), 7));
        assert_eq!((l.unpadded.rows, l.unpadded.cols), (54, 73));
        assert_eq!(l.merged, (46, 62));
        assert_eq!(l.num_features(), 729 + 46 * 63);
        // 300x900: 1x3 grid (81x27 map); aspect 1/3 == 27/81 -> columns
        // branch, new_w = int(300 * 81/900) = 27, nothing cut; times =
        // sqrt(2187/2916) < 1.1 -> kept: 729 + 81 * 28.
        let l = count(300, 900);
        assert_eq!(l.grid, (1, 3));
        assert_eq!(l.merged, (81, 27));
        assert_eq!(l.num_features(), 729 + 81 * 28);
        // 400x200 (2:1): 2x1 grid (27x54 map), exact aspect -> rows branch
        // with new_h = int(200 * 54/400) = 27, nothing cut: 729 + 27 * 55.
        let l = count(400, 200);
        assert_eq!(l.grid, (2, 1));
        assert_eq!(l.merged, (27, 54));
        assert_eq!(l.num_features(), 729 + 27 * 55);
        // 4000x3000: no canvas holds all 12M pixels, so the most kept wins:
        // 2304x2304 and 2304x1920 both keep 2304x1728; 2304x1920 wastes less
        // -> 6x5 grid, a 135x162 map. Aspect 4/3 > 162/135 -> rows cut:
        // new_h = int(3000 * 162/4000) = 121, pad 7. times =
        // sqrt(121 * 162 / 2916) = 2.593 -> 121 // 2.593 = 46, 162 // 2.593 = 62.
        let l = count(4000, 3000);
        assert_eq!((l.canvas, l.grid), ((2304, 1920), (6, 5)));
        assert_eq!(
            l.unpadded,
            UnpadWindow {
                top: 7,
                rows: 121,
                left: 0,
                cols: 162
            }
        );
        assert_eq!(l.merged, (46, 62));
        assert_eq!(l.num_features(), 729 + 46 * 63);
        // 1000x200 (5:1 strip): 3x1 grid (27x81 map), rows cut: new_h =
        // int(200 * 81/1000) = 16, pad 5 -> 17 rows; no shrink: 729 + 17 * 82.
        let l = count(1000, 200);
        assert_eq!(l.grid, (3, 1));
        assert_eq!(l.merged, (17, 81));
        assert_eq!(l.num_features(), 729 + 17 * 82);
        // 50x500 (1:10 needle): 1x2 grid (54x27 map), columns cut: new_w =
        // int(50 * 54/500) = 5, pad 11 -> 5 columns: 729 + 54 * 6.
        let l = count(50, 500);
        assert_eq!(l.grid, (1, 2));
        assert_eq!(l.merged, (54, 5));
        assert_eq!(l.num_features(), 729 + 54 * 6);
    }
}
