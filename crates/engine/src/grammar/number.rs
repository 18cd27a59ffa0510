//! Numbers with bounds (`minimum`, `maximum`, and their exclusive forms), followed byte by byte:
//! each digit is allowed only while some way to go on ends within the bounds, so a reply never
//! reaches a number it cannot finish.
//!
//! A bounded number is written without an exponent, with at most [`MAX_SIGNIFICANT`]
//! significant digits and [`MAX_SCALE`] after the point: the value so far then fits a `u64`
//! mantissa and a scale, the frame stays small and `Copy`, and what can still come is a short
//! list of intervals (more integer digits multiply by ten; fraction digits refine). An integer
//! is compared exactly; a number as the `f64` its text reads as, as validators compare it.

use super::schema::Range;
use super::NumState;

/// Most significant digits of a bounded number (every `i64` has at most this many).
pub(super) const MAX_SIGNIFICANT: u8 = 19;
/// Most digits after the point of a bounded number.
pub(super) const MAX_SCALE: u8 = 30;

/// A bounded number being written.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct Bounded {
    /// Index into the schema's ranges.
    pub(super) range: u32,
    pub(super) integer: bool,
    neg: bool,
    state: NumState,
    /// The digits so far, without the point.
    mant: u64,
    /// Significant digits in `mant` (leading zeros not counted).
    digits: u8,
    /// Digits after the point.
    scale: u8,
}

/// What a byte does to a bounded number.
pub(super) enum Step {
    /// Part of it, and the number can still end within its bounds.
    Next(Bounded),
    /// Not part of it, and the number may end here: the byte goes to what is around it.
    End,
    /// Refused.
    Refuse,
}

impl Bounded {
    /// The number begun with `b`, if `b` may begin it.
    pub(super) fn start(b: u8, range: u32, integer: bool, r: &Range) -> Option<Bounded> {
        let mut n = Bounded {
            range,
            integer,
            neg: false,
            state: NumState::Minus,
            mant: 0,
            digits: 0,
            scale: 0,
        };
        match b {
            b'-' => n.neg = true,
            b'0'..=b'9' => {
                n.state = if b == b'0' { NumState::Zero } else { NumState::Int };
                n.mant = (b - b'0') as u64;
                n.digits = (b != b'0') as u8;
            }
            _ => return None,
        }
        n.feasible(r).then_some(n)
    }

    pub(super) fn step(self, b: u8, r: &Range) -> Step {
        let next = match b {
            // No exponents: every value a range allows can be written without one.
            b'e' | b'E' => None,
            _ => self.state.next(b, self.integer),
        };
        let Some(state) = next else {
            return if self.state.complete() && self.within(r) {
                Step::End
            } else {
                Step::Refuse
            };
        };
        let mut n = Bounded { state, ..self };
        if b.is_ascii_digit() {
            let d = (b - b'0') as u64;
            let fraction = matches!(self.state, NumState::Dot | NumState::Frac);
            if (fraction && n.scale >= MAX_SCALE) || (n.digits >= MAX_SIGNIFICANT && (n.mant, d) != (0, 0)) {
                return Step::Refuse;
            }
            n.mant = n.mant * 10 + d;
            if n.mant != 0 {
                n.digits += 1;
            }
            if fraction {
                n.scale += 1;
            }
        }
        if n.feasible(r) {
            Step::Next(n)
        } else {
            Step::Refuse
        }
    }

    /// Whether the number may end here: its value is within the bounds.
    fn within(&self, r: &Range) -> bool {
        if self.integer {
            let v = if self.neg {
                -(self.mant as i128)
            } else {
                self.mant as i128
            };
            return r.ilo <= v && v <= r.ihi;
        }
        let v = self.value();
        (if r.lo_strict { v > r.lo } else { v >= r.lo }) && (if r.hi_strict { v < r.hi } else { v <= r.hi })
    }

    /// The `f64` the text so far reads as (correctly rounded, as a JSON parser reads it).
    fn value(&self) -> f64 {
        let m = if self.mant < 1 << 53 && self.scale <= 22 {
            // Both exact, and one correctly rounded division.
            self.mant as f64 / 10f64.powi(self.scale as i32)
        } else {
            format!("{}e-{}", self.mant, self.scale)
                .parse()
                .expect("digits and an exponent are a number")
        };
        if self.neg {
            -m
        } else {
            m
        }
    }

    /// Whether some way to go on ends within the bounds.
    fn feasible(&self, r: &Range) -> bool {
        let room = MAX_SIGNIFICANT - self.digits;
        if self.integer {
            return match self.state {
                // Any integer of up to 19 digits, of this sign (`-0` is 0).
                NumState::Minus => self.meets_int(r, 0, 10i128.pow(MAX_SIGNIFICANT as u32) - 1),
                NumState::Zero => self.meets_int(r, 0, 0),
                _ => {
                    // This number, then with one more digit, two more, …: I·10^j ..= I·10^j + 10^j − 1.
                    let i = self.mant as i128;
                    (0..=room as u32).any(|j| {
                        let p = 10i128.pow(j);
                        self.meets_int(r, i * p, i * p + p - 1)
                    })
                }
            };
        }
        let full = room == 0 || self.scale >= MAX_SCALE;
        match self.state {
            NumState::Minus => self.meets(r, 0.0, 1e19, false),
            NumState::Zero => self.meets(r, 0.0, 1.0, false),
            // A fraction digit must be able to come.
            NumState::Dot if room == 0 => false,
            NumState::Dot => self.meets(r, self.mant as f64, self.mant as f64 + 1.0, false),
            NumState::Int => {
                // I·10^j ..< (I+1)·10^j: more integer digits, then maybe a fraction.
                let i = self.mant as f64;
                (0..=room as i32).any(|j| {
                    let p = 10f64.powi(j);
                    self.meets(r, i * p, (i + 1.0) * p, false)
                })
            }
            // This value, then more fraction digits: v ..< v + 10^-scale.
            _ => {
                let v = self.value().abs();
                let end = if full { v } else { v + 10f64.powi(-(self.scale as i32)) };
                self.meets(r, v, end, full)
            }
        }
    }

    /// Whether magnitudes `a ..= b` of this sign meet an integer range.
    fn meets_int(&self, r: &Range, a: i128, b: i128) -> bool {
        let (lo, hi) = if self.neg { (-b, -a) } else { (a, b) };
        lo <= r.ihi && hi >= r.ilo
    }

    /// Whether magnitudes `a ..< b` (`..= b` when `closed`) of this sign meet a number's range.
    fn meets(&self, r: &Range, a: f64, b: f64, closed: bool) -> bool {
        // (value, closed) ends of the magnitudes as values.
        let (lo, hi) = if self.neg {
            ((-b, closed), (-a, true))
        } else {
            ((a, true), (b, closed))
        };
        let lower = tighter(lo, (r.lo, !r.lo_strict), |x, y| x > y);
        let upper = tighter(hi, (r.hi, !r.hi_strict), |x, y| x < y);
        lower.0 < upper.0 || (lower.0 == upper.0 && lower.1 && upper.1)
    }
}

/// Of two (value, closed) ends, the one `beyond` says is tighter; at the same value, closed
/// only if both are.
fn tighter(a: (f64, bool), b: (f64, bool), beyond: impl Fn(f64, f64) -> bool) -> (f64, bool) {
    if beyond(a.0, b.0) {
        a
    } else if beyond(b.0, a.0) {
        b
    } else {
        (a.0, a.1 && b.1)
    }
}
