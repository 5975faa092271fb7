//! Z-order of a board's elements, written once for both adapters: the PostgreSQL
//! adapter uses this module and `modules/whiteboard` includes this file (`#[path]`).
//! Layers are fractional keys (`crate::ordering`), back to front; ties by id.

use crate::ordering::key_between;

/// `(z, id)` of the live elements, sorted back to front.
fn sorted<'a>(layers: &'a [(&'a str, &'a str)]) -> Vec<(&'a str, &'a str)> {
    let mut sorted = layers.to_vec();
    sorted.sort();
    sorted
}

/// The z of a new element: in front of everything.
pub fn top(layers: &[(&str, &str)]) -> String {
    key_between(sorted(layers).last().map(|(z, _)| *z), None)
}

/// The new z of `id` one step to the front (`None`: already in front, or unknown).
pub fn forward(layers: &[(&str, &str)], id: &str) -> Option<String> {
    let layers = sorted(layers);
    let index = layers.iter().position(|(_, i)| *i == id)?;
    let over = layers.get(index + 1)?;
    Some(key_between(Some(over.0), layers.get(index + 2).map(|(z, _)| *z)))
}

/// The new z of `id` one step to the back (`None`: already at the back, or unknown).
pub fn backward(layers: &[(&str, &str)], id: &str) -> Option<String> {
    let layers = sorted(layers);
    let index = layers.iter().position(|(_, i)| *i == id)?;
    let under = layers.get(index.checked_sub(1)?)?;
    let below = index.checked_sub(2).and_then(|i| layers.get(i)).map(|(z, _)| *z);
    Some(key_between(below, Some(under.0)))
}
