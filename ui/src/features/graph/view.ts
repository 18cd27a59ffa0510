// Zoom and pan of the map as plain numbers: a screen point is `world * k + (x, y)`. Pure, so the
// component only stores a `View` and the tests check the arithmetic without a browser.

export type View = { x: number; y: number; k: number };
export type Size = { width: number; height: number };
export type Box = { x: number; y: number; width: number; height: number };

export const MIN_ZOOM = 0.2;
export const MAX_ZOOM = 2.5;
/** One press of + or −. */
export const ZOOM_STEP = 1.25;

export function clampZoom(k: number): number {
  return Math.min(MAX_ZOOM, Math.max(MIN_ZOOM, k));
}

/** Zooms by `factor`, keeping the world point under the screen point (`px`, `py`) in place. */
export function zoomAt(view: View, factor: number, px: number, py: number): View {
  const k = clampZoom(view.k * factor);
  const wx = (px - view.x) / view.k;
  const wy = (py - view.y) / view.k;
  return { k, x: px - wx * k, y: py - wy * k };
}

/**
 * The whole of `world` in `size`, centred, never magnified past 100% (a small tree stays at its
 * natural size). When even the smallest zoom is too big, the top left corner is shown.
 */
export function fit(world: Box, size: Size, pad = 16): View {
  const k = clampZoom(
    Math.min(
      1,
      (size.width - 2 * pad) / Math.max(1, world.width),
      (size.height - 2 * pad) / Math.max(1, world.height),
    ),
  );
  const place = (free: number, start: number, span: number) =>
    span * k <= free ? (free - span * k) / 2 - start * k : pad - start * k;
  return { k, x: place(size.width, world.x, world.width), y: place(size.height, world.y, world.height) };
}

/** Puts the world point (`wx`, `wy`) in the middle of the canvas, at zoom `k`. */
export function centreOn(wx: number, wy: number, size: Size, k: number): View {
  return { k, x: size.width / 2 - wx * k, y: size.height / 2 - wy * k };
}

/** Pans as little as needed for `box` to be on screen with `pad` around it (centres it if too big). */
export function reveal(view: View, box: Box, size: Size, pad = 24): View {
  const axis = (offset: number, start: number, span: number, free: number) => {
    const lo = start * view.k + offset;
    const hi = (start + span) * view.k + offset;
    if (hi - lo > free - 2 * pad) return free / 2 - (start + span / 2) * view.k;
    if (lo < pad) return offset + (pad - lo);
    if (hi > free - pad) return offset - (hi - (free - pad));
    return offset;
  };
  const x = axis(view.x, box.x, box.width, size.width);
  const y = axis(view.y, box.y, box.height, size.height);
  return x === view.x && y === view.y ? view : { ...view, x, y };
}

/** The part of the world on screen, grown by `margin` screen pixels on every side. */
export function visibleWorld(view: View, size: Size, margin = 0): Box {
  return {
    x: (-view.x - margin) / view.k,
    y: (-view.y - margin) / view.k,
    width: (size.width + 2 * margin) / view.k,
    height: (size.height + 2 * margin) / view.k,
  };
}

export function overlaps(a: Box, b: Box): boolean {
  return a.x < b.x + b.width && b.x < a.x + a.width && a.y < b.y + b.height && b.y < a.y + a.height;
}

/** `translate(x, y) scale(k)` for the SVG group that holds the map. */
export function transformOf(view: View): string {
  const r = (n: number) => Math.round(n * 100) / 100;
  return `translate(${r(view.x)}, ${r(view.y)}) scale(${Math.round(view.k * 1000) / 1000})`;
}
