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

/// The new z of `id` directly above element `above` (at the back when `None`), among
/// the other elements; `Err(above)` when `above` is not on the board.
pub fn above<'a>(layers: &[(&'a str, &'a str)], id: &str, above: Option<&'a str>) -> Result<String, &'a str> {
    let others: Vec<(&str, &str)> = sorted(layers).into_iter().filter(|(_, i)| *i != id).collect();
    match above {
        None => Ok(key_between(None, others.first().map(|(z, _)| *z))),
        Some(above) => {
            let index = others.iter().position(|(_, i)| *i == above).ok_or(above)?;
            Ok(key_between(Some(others[index].0), others.get(index + 1).map(|(z, _)| *z)))
        }
    }
}

/// The element directly below `id` (`None`: it is at the back, or not on the board).
pub fn below<'a>(layers: &'a [(&'a str, &'a str)], id: &str) -> Option<&'a str> {
    let sorted = sorted(layers);
    let index = sorted.iter().position(|(_, i)| *i == id)?;
    index.checked_sub(1).map(|below| sorted[below].1)
}
