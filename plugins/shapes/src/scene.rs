//! Scenes: up to three objects, one per column, with size, colour and shape.

use rand::seq::SliceRandom;
use rand::Rng;
use serde::{Deserialize, Serialize};

/// Sizes, in caption order.
pub const SIZES: [&str; 2] = ["small", "big"];
/// Colours.
pub const COLORS: [&str; 4] = ["red", "green", "blue", "yellow"];
/// Shapes.
pub const SHAPES: [&str; 3] = ["circle", "square", "triangle"];
/// Horizontal positions (image columns), left to right.
pub const POSITIONS: [&str; 3] = ["left", "middle", "right"];

/// One object of a scene.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct SceneObject {
    /// One of [`SIZES`].
    pub size: String,
    /// One of [`COLORS`].
    pub color: String,
    /// One of [`SHAPES`].
    pub shape: String,
    /// One of [`POSITIONS`]; unique within a scene.
    pub position: String,
}

impl SceneObject {
    /// An object from its four attribute words.
    pub fn new(size: &str, color: &str, shape: &str, position: &str) -> Self {
        Self {
            size: size.into(),
            color: color.into(),
            shape: shape.into(),
            position: position.into(),
        }
    }
}

/// The ground truth of one image.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Scene {
    /// Objects, in left-to-right order.
    pub objects: Vec<SceneObject>,
}

fn pick<R: Rng + ?Sized>(rng: &mut R, options: &[&str]) -> String {
    options[rng.random_range(0..options.len())].to_string()
}

impl Scene {
    /// A random scene with `min..=max` objects in distinct columns.
    pub fn random<R: Rng + ?Sized>(rng: &mut R, min: usize, max: usize) -> Scene {
        let n = rng.random_range(min..=max);
        let mut columns: Vec<usize> = (0..POSITIONS.len()).collect();
        columns.shuffle(rng);
        let mut columns: Vec<usize> = columns.into_iter().take(n).collect();
        columns.sort();
        let objects = columns
            .into_iter()
            .map(|c| SceneObject {
                size: pick(rng, &SIZES),
                color: pick(rng, &COLORS),
                shape: pick(rng, &SHAPES),
                position: POSITIONS[c].to_string(),
            })
            .collect();
        Scene { objects }
    }

    /// Column index of a position word.
    pub fn column(position: &str) -> Option<usize> {
        POSITIONS.iter().position(|p| *p == position)
    }
}
