//! PNG plots of a run (plotters, pure Rust): held-out accuracy per round per skill, pass rate by
//! difficulty, data volume and training loss. Text needs a TrueType font, read once from the
//! system (or `AUTODIDACT_FONT`), since plotters' pure-Rust text renderer ships none.
use crate::report::RunReport;
use crate::ImproveError;
use plotters::prelude::*;
use std::path::{Path, PathBuf};
use std::sync::OnceLock;

/// Where common Linux distributions keep a sans-serif TrueType font.
const FONTS: &[&str] = &[
    "/usr/share/fonts/truetype/dejavu/DejaVuSans.ttf",
    "/usr/share/fonts/TTF/DejaVuSans.ttf",
    "/usr/share/fonts/dejavu/DejaVuSans.ttf",
    "/usr/share/fonts/truetype/liberation/LiberationSans-Regular.ttf",
    "/usr/share/fonts/liberation-sans/LiberationSans-Regular.ttf",
    "/usr/share/fonts/truetype/noto/NotoSans-Regular.ttf",
    "/usr/share/fonts/noto/NotoSans-Regular.ttf",
    "/System/Library/Fonts/Supplemental/Arial.ttf",
];

/// The font file plots are drawn with: `AUTODIDACT_FONT`, else the first of [`FONTS`] present.
pub fn find_font() -> Result<PathBuf, ImproveError> {
    let mut tried: Vec<String> = Vec::new();
    if let Some(p) = std::env::var_os("AUTODIDACT_FONT") {
        let p = PathBuf::from(p);
        if p.is_file() {
            return Ok(p);
        }
        tried.push(p.display().to_string());
    }
    for f in FONTS {
        if Path::new(f).is_file() {
            return Ok(PathBuf::from(f));
        }
    }
    tried.extend(FONTS.iter().map(|s| s.to_string()));
    Err(ImproveError::NoFont { tried })
}

/// Registers the font with plotters once per process.
fn ensure_font() -> Result<(), ImproveError> {
    static DONE: OnceLock<Result<(), Vec<String>>> = OnceLock::new();
    let r = DONE.get_or_init(|| {
        let path = find_font().map_err(|e| match e {
            ImproveError::NoFont { tried } => tried,
            other => vec![other.to_string()],
        })?;
        let bytes = std::fs::read(&path).map_err(|_| vec![path.display().to_string()])?;
        // plotters keeps registered fonts for the life of the process.
        let bytes: &'static [u8] = Box::leak(bytes.into_boxed_slice());
        plotters::style::register_font("sans-serif", FontStyle::Normal, bytes)
            .map_err(|_| vec![format!("{} (not a TrueType font)", path.display())])
    });
    r.clone().map_err(|tried| ImproveError::NoFont { tried })
}

/// One named line of points.
pub struct Series {
    pub name: String,
    pub points: Vec<(f64, f64)>,
}

/// How a chart's axes are labelled.
pub struct Chart<'a> {
    pub title: &'a str,
    pub x: &'a str,
    pub y: &'a str,
    /// Names for integer x positions (categories) instead of numbers.
    pub x_names: Option<&'a [String]>,
}

const COLOURS: [RGBColor; 6] = [
    RGBColor(31, 119, 180),
    RGBColor(255, 127, 14),
    RGBColor(44, 160, 44),
    RGBColor(214, 39, 40),
    RGBColor(148, 103, 189),
    RGBColor(140, 86, 75),
];

fn plot_error(path: &Path, e: impl std::fmt::Display) -> ImproveError {
    ImproveError::Plot {
        path: path.to_path_buf(),
        reason: e.to_string(),
    }
}

/// Draws `series` as lines with markers into a 800×480 PNG at `path`. The picture is drawn
/// beside it and renamed into place, so a reader (the server) never sees half a file.
pub fn line_chart(path: &Path, chart: &Chart, series: &[Series]) -> Result<(), ImproveError> {
    ensure_font()?;
    // The backend picks the image format from the extension, so the temporary name keeps it.
    let tmp = crate::registry::temp_beside(path, "tmp.png");
    let drawn = draw(&tmp, chart, series);
    if drawn.is_err() {
        let _ = std::fs::remove_file(&tmp);
    }
    drawn?;
    std::fs::rename(&tmp, path).map_err(|e| ImproveError::io(path, e))
}

fn draw(path: &Path, chart: &Chart, series: &[Series]) -> Result<(), ImproveError> {
    let pts = || series.iter().flat_map(|s| s.points.iter());
    let (mut x0, mut x1) = (f64::INFINITY, f64::NEG_INFINITY);
    let (mut y0, mut y1) = (f64::INFINITY, f64::NEG_INFINITY);
    for &(x, y) in pts() {
        (x0, x1, y0, y1) = (x0.min(x), x1.max(x), y0.min(y), y1.max(y));
    }
    if !x0.is_finite() {
        (x0, x1, y0, y1) = (0.0, 1.0, 0.0, 1.0);
    }
    let pad_x = ((x1 - x0) * 0.05).max(0.5);
    let pad_y = ((y1 - y0) * 0.1).max(0.05);
    let root = BitMapBackend::new(path, (800, 480)).into_drawing_area();
    root.fill(&WHITE).map_err(|e| plot_error(path, e))?;
    let mut c = ChartBuilder::on(&root)
        .caption(chart.title, ("sans-serif", 22))
        .margin(12)
        .x_label_area_size(40)
        .y_label_area_size(56)
        .build_cartesian_2d(
            (x0 - pad_x)..(x1 + pad_x),
            (y0 - pad_y).min(0.0)..(y1 + pad_y),
        )
        .map_err(|e| plot_error(path, e))?;
    let names = chart.x_names;
    // Rounds, steps and difficulties are whole numbers: other ticks stay unlabelled.
    let label = |x: &f64| {
        if (x - x.round()).abs() > 1e-9 {
            return String::new();
        }
        let i = x.round() as i64;
        match names {
            Some(n) => usize::try_from(i)
                .ok()
                .and_then(|i| n.get(i).cloned())
                .unwrap_or_default(),
            None => i.to_string(),
        }
    };
    let n_labels = names.map_or(10, |n| n.len().max(1));
    c.configure_mesh()
        .x_desc(chart.x)
        .y_desc(chart.y)
        .x_labels(n_labels)
        .x_label_formatter(&label)
        .draw()
        .map_err(|e| plot_error(path, e))?;
    for (i, s) in series.iter().enumerate() {
        let colour = COLOURS[i % COLOURS.len()];
        c.draw_series(LineSeries::new(
            s.points.iter().copied(),
            colour.stroke_width(2),
        ))
        .map_err(|e| plot_error(path, e))?
        .label(s.name.clone())
        .legend(move |(x, y)| PathElement::new(vec![(x, y), (x + 18, y)], colour.stroke_width(2)));
        if s.points.len() <= 60 {
            c.draw_series(s.points.iter().map(|&p| Circle::new(p, 3, colour.filled())))
                .map_err(|e| plot_error(path, e))?;
        }
    }
    if !series.is_empty() {
        c.configure_series_labels()
            .background_style(WHITE.mix(0.8))
            .border_style(BLACK)
            .draw()
            .map_err(|e| plot_error(path, e))?;
    }
    root.present().map_err(|e| plot_error(path, e))
}

/// The file names of a run's plots, as [`run_plots`] writes them.
pub const PLOT_FILES: [&str; 4] = [
    "accuracy.png",
    "pass_by_difficulty.png",
    "data.png",
    "train_loss.png",
];

/// The four plots of a run, written into `dir`; returns their paths.
pub fn run_plots(report: &RunReport, dir: &Path) -> Result<Vec<PathBuf>, ImproveError> {
    let mut out = Vec::new();
    let rounds = &report.rounds;

    // Held-out accuracy: round 0 is the self the first candidate would replace.
    let mut skills: Vec<String> = Vec::new();
    for rd in rounds {
        for s in &rd.skills {
            if !skills.contains(&s.skill) {
                skills.push(s.skill.clone());
            }
        }
    }
    let acc: Vec<Series> = skills
        .iter()
        .map(|name| {
            let mut points = Vec::new();
            let first = rounds
                .iter()
                .flat_map(|rd| rd.skills.iter())
                .find(|s| &s.skill == name);
            if let Some(b) = first.and_then(|s| s.before.as_ref()) {
                points.push((0.0, 100.0 * b.accuracy));
            }
            for rd in rounds {
                if let Some(a) = rd
                    .skills
                    .iter()
                    .find(|s| &s.skill == name)
                    .and_then(|s| s.after.as_ref())
                {
                    points.push((rd.round as f64, 100.0 * a.accuracy));
                }
            }
            Series {
                name: name.clone(),
                points,
            }
        })
        .collect();
    let p = dir.join(PLOT_FILES[0]);
    let chart = Chart {
        title: "Held-out accuracy of each round's candidate (plain chat, greedy)",
        x: "round (0: before the run)",
        y: "accuracy (%)",
        x_names: None,
    };
    line_chart(&p, &chart, &acc)?;
    out.push(p);

    // Pass rate by difficulty, one line per round.
    let mut levels: Vec<(i64, String)> = Vec::new();
    for rd in rounds {
        for l in &rd.levels {
            if !levels.iter().any(|(lv, s)| *lv == l.level && *s == l.sub) {
                levels.push((l.level, l.sub.clone()));
            }
        }
    }
    levels.sort();
    let names: Vec<String> = levels.iter().map(|(_, s)| s.clone()).collect();
    let by_level: Vec<Series> = rounds
        .iter()
        .map(|rd| Series {
            name: format!("round {}", rd.round),
            points: rd
                .levels
                .iter()
                .filter_map(|l| {
                    let x = levels
                        .iter()
                        .position(|(lv, s)| *lv == l.level && *s == l.sub)?;
                    Some((x as f64, 100.0 * l.pass_rate()))
                })
                .collect(),
        })
        .collect();
    let p = dir.join(PLOT_FILES[1]);
    let chart = Chart {
        title: "Rollouts verified, by difficulty",
        x: "difficulty",
        y: "samples passed (%)",
        x_names: Some(&names),
    };
    line_chart(&p, &chart, &by_level)?;
    out.push(p);

    // Data volume.
    let series = |name: &str, v: &dyn Fn(&crate::report::RoundReport) -> f64| Series {
        name: name.into(),
        points: rounds.iter().map(|rd| (rd.round as f64, v(rd))).collect(),
    };
    let data = vec![
        series("samples", &|rd| rd.samples as f64),
        series("verified", &|rd| rd.verified as f64),
        series("training examples", &|rd| rd.train_examples as f64),
    ];
    let p = dir.join(PLOT_FILES[2]);
    let chart = Chart {
        title: "Data per round",
        x: "round",
        y: "count",
        x_names: None,
    };
    line_chart(&p, &chart, &data)?;
    out.push(p);

    // Training loss per step.
    let loss: Vec<Series> = rounds
        .iter()
        .filter(|rd| !rd.train_losses.is_empty())
        .map(|rd| Series {
            name: format!("round {}", rd.round),
            points: rd
                .train_losses
                .iter()
                .enumerate()
                .map(|(i, &l)| ((i + 1) as f64, l))
                .collect(),
        })
        .collect();
    let p = dir.join(PLOT_FILES[3]);
    let chart = Chart {
        title: "Training loss of each round's candidate",
        x: "optimizer step",
        y: "loss",
        x_names: None,
    };
    line_chart(&p, &chart, &loss)?;
    out.push(p);
    Ok(out)
}
