// Human-readable numbers for the library, the status bar and progress displays.

const grouped = new Intl.NumberFormat("en-US");

/** 1234 -> "1,234". */
export function formatCount(n: number): string {
  return grouped.format(Math.round(n));
}

/** 1 -> "1 token", 1234 -> "1,234 tokens". */
export function formatTokens(n: number): string {
  return `${formatCount(n)} ${n === 1 ? "token" : "tokens"}`;
}

/** 950 -> "950", 12_345 -> "12.3k", 1_200_000 -> "1.2M": for narrow columns. */
export function formatCompact(n: number): string {
  if (n < 1000) return String(Math.round(n));
  if (n < 1_000_000) return `${trim(n / 1000)}k`;
  return `${trim(n / 1_000_000)}M`;
}

function trim(x: number): string {
  return x >= 100 ? String(Math.round(x)) : x.toFixed(1).replace(/\.0$/, "");
}

const UNITS = ["B", "KB", "MB", "GB", "TB"];

/** Bytes in decimal units, as file managers show them: 1_500_000 -> "1.5 MB". */
export function formatBytes(bytes: number): string {
  if (!Number.isFinite(bytes) || bytes < 0) return "–";
  let value = bytes;
  let unit = 0;
  while (value >= 1000 && unit < UNITS.length - 1) {
    value /= 1000;
    unit += 1;
  }
  if (unit === 0) return `${value} B`;
  return `${trim(value)} ${UNITS[unit]}`;
}

/** Milliseconds for timings: 12 -> "12 ms", 1530 -> "1.5 s", 95_000 -> "1 min 35 s". */
export function formatMillis(ms: number): string {
  if (ms < 1000) return `${Math.round(ms)} ms`;
  if (ms < 60_000) return `${trim(ms / 1000)} s`;
  return formatSeconds(ms / 1000);
}

/** Seconds as a rough duration: 42 -> "42 s", 95 -> "1 min 35 s", 3720 -> "1 h 2 min". */
export function formatSeconds(s: number): string {
  const total = Math.max(0, Math.round(s));
  if (total < 60) return `${total} s`;
  const h = Math.floor(total / 3600);
  const m = Math.floor((total % 3600) / 60);
  const sec = total % 60;
  if (h > 0) return m > 0 ? `${h} h ${m} min` : `${h} h`;
  return sec > 0 ? `${m} min ${sec} s` : `${m} min`;
}

/** A percentage of a whole, clamped to 0..100 and rounded. */
export function percent(part: number, whole: number): number {
  if (whole <= 0) return 0;
  return Math.min(100, Math.max(0, Math.round((part / whole) * 100)));
}

/** Unix seconds (or milliseconds) as a short local date and time. */
export function formatDate(timestamp: number): string {
  const ms = timestamp < 1e12 ? timestamp * 1000 : timestamp;
  return new Date(ms).toLocaleString(undefined, {
    year: "numeric",
    month: "short",
    day: "numeric",
    hour: "2-digit",
    minute: "2-digit",
  });
}
