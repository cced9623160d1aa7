//! Aligned text tables.

/// Prints `rows` (the first is the header) in aligned columns, two spaces apart;
/// `right` names the columns aligned to the right (numbers).
pub fn print(rows: &[Vec<String>], right: &[usize]) {
    let columns = rows.iter().map(Vec::len).max().unwrap_or(0);
    let widths: Vec<usize> = (0..columns)
        .map(|i| rows.iter().filter_map(|r| r.get(i)).map(|c| c.chars().count()).max().unwrap_or(0))
        .collect();
    for r in rows {
        let cells: Vec<String> = r
            .iter()
            .zip(&widths)
            .enumerate()
            .map(|(i, (c, w))| if right.contains(&i) { format!("{c:>w$}") } else { format!("{c:<w$}") })
            .collect();
        println!("{}", cells.join("  ").trim_end());
    }
}
