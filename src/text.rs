//! Small wording and layout helpers for what people read: a count and its noun, and a
//! plain-text table that fits a terminal's width.

/// `n` and the noun that agrees with it: `no secrets`, `1 secret`, `2 secrets`.
///
/// `one` is the singular, `many` the plural (given whole, so irregular plurals work).
pub fn count(n: impl Into<u64>, one: &str, many: &str) -> String {
    match n.into() {
        0 => format!("no {many}"),
        1 => format!("1 {one}"),
        n => format!("{n} {many}"),
    }
}

/// [`count`] for a `usize`, the type collections report their length in.
pub fn count_of(n: usize, one: &str, many: &str) -> String {
    count(u64::try_from(n).unwrap_or(u64::MAX), one, many)
}

/// `text` in at most `width` characters: whole when it fits, else its start and its end
/// around a `…` (the start gets the odd character), so a key's recognisable prefix and
/// its tail both stay visible.
pub fn ellipsize(text: &str, width: usize) -> String {
    let chars: Vec<char> = text.chars().collect();
    if chars.len() <= width {
        return text.to_string();
    }
    if width == 0 {
        return String::new();
    }
    let keep = width - 1;
    let tail = keep / 2;
    let head = keep - tail;
    let mut out: String = chars[..head].iter().collect();
    out.push('…');
    out.extend(&chars[chars.len() - tail..]);
    out
}

/// Columns between two cells of a [`Table`] line.
const GAP: usize = 2;

/// A plain-text table: a title line and rows of cells, left-aligned, columns two spaces
/// apart. Widths are counted in characters.
#[derive(Debug, Clone)]
pub struct Table {
    titles: Vec<String>,
    rows: Vec<Vec<String>>,
}

impl Table {
    /// A table with these column titles and no rows.
    pub fn new(titles: &[&str]) -> Table {
        Table {
            titles: titles.iter().map(|t| t.to_string()).collect(),
            rows: Vec::new(),
        }
    }

    /// Adds a row; missing cells are empty, extra cells are dropped.
    pub fn row(&mut self, cells: Vec<String>) {
        let mut cells = cells;
        cells.resize(self.titles.len(), String::new());
        self.rows.push(cells);
    }

    /// Each column's natural width: its widest cell or title.
    fn natural_widths(&self) -> Vec<usize> {
        (0..self.titles.len())
            .map(|i| {
                std::iter::once(&self.titles[i])
                    .chain(self.rows.iter().map(|r| &r[i]))
                    .map(|c| c.chars().count())
                    .max()
                    .unwrap_or(0)
            })
            .collect()
    }

    /// The longest line [`Table::render`] would print with no width limit.
    pub fn natural_width(&self) -> usize {
        line_width(&self.natural_widths())
    }

    /// The lines of the table. With `max`, columns shrink in the order `shrink` gives,
    /// each step `(column, floor)` narrowing one column (never below `floor`) until the
    /// lines fit; cells cut to their column's width keep their start and end
    /// ([`ellipsize`]). A table that cannot fit after every step prints wider.
    pub fn render(&self, max: Option<usize>, shrink: &[(usize, usize)]) -> Vec<String> {
        let mut widths = self.natural_widths();
        if let Some(max) = max {
            for &(column, floor) in shrink {
                let over = line_width(&widths).saturating_sub(max);
                if over == 0 {
                    break;
                }
                if let Some(w) = widths.get_mut(column)
                    && *w > floor
                {
                    *w = floor.max(w.saturating_sub(over));
                }
            }
        }
        std::iter::once(&self.titles)
            .chain(&self.rows)
            .map(|cells| render_line(cells, &widths))
            .collect()
    }
}

/// The width of a line whose columns have `widths` (the last cell is not padded, but
/// may be as wide as its column).
fn line_width(widths: &[usize]) -> usize {
    widths.iter().sum::<usize>() + GAP * widths.len().saturating_sub(1)
}

fn render_line(cells: &[String], widths: &[usize]) -> String {
    let mut line = String::new();
    for (i, (cell, &width)) in cells.iter().zip(widths).enumerate() {
        let cell = ellipsize(cell, width);
        line.push_str(&cell);
        if i + 1 < cells.len() {
            let pad = width - cell.chars().count() + GAP;
            line.extend(std::iter::repeat_n(' ', pad));
        }
    }
    line
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn agrees_with_the_number() {
        assert_eq!(count_of(0, "secret", "secrets"), "no secrets");
        assert_eq!(count_of(1, "secret", "secrets"), "1 secret");
        assert_eq!(count_of(2, "secret", "secrets"), "2 secrets");
        assert_eq!(count(1u32, "entry", "entries"), "1 entry");
        assert_eq!(count(12u64, "entry", "entries"), "12 entries");
    }

    #[test]
    fn ellipsize_keeps_start_and_end() {
        assert_eq!(ellipsize("short", 5), "short");
        assert_eq!(ellipsize("abcdefghij", 7), "abc…hij");
        assert_eq!(ellipsize("abcdefghij", 6), "abc…ij");
        assert_eq!(ellipsize("abcdefghij", 1), "…");
        assert_eq!(ellipsize("abcdefghij", 0), "");
        assert_eq!(ellipsize("ééééé", 3).chars().count(), 3);
    }

    #[test]
    fn a_table_shrinks_in_the_given_order_to_fit() {
        let mut table = Table::new(&["NAME", "VALUE", "OK"]);
        table.row(vec!["a".into(), "x".repeat(50), "yes".into()]);
        table.row(vec!["bb".into(), "y".into()]);
        assert_eq!(table.natural_width(), 4 + 2 + 50 + 2 + 3);
        let lines = table.render(Some(30), &[(1, 10)]);
        assert!(lines.iter().all(|l| l.chars().count() <= 30), "{lines:#?}");
        assert_eq!(lines[0], format!("NAME  VALUE{}  OK", " ".repeat(14)));
        assert!(
            lines[1].starts_with("a     xxxxxxxxx…xxxxxxxxx"),
            "{lines:#?}"
        );
        assert_eq!(lines[2].trim_end(), "bb    y");
        let whole = table.render(None, &[(1, 10)]);
        assert!(whole[1].contains(&"x".repeat(50)));
        let floor = table.render(Some(10), &[(1, 10), (0, 2)]);
        assert_eq!(floor[0], format!("N…  VALUE{}  OK", " ".repeat(5)));
        assert_eq!(
            floor[1].chars().count(),
            2 + 2 + 10 + 2 + 3,
            "never below a floor"
        );
    }
}
