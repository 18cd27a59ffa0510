import { describe, expect, it } from "vitest";
import { centreOn, clampZoom, fit, MAX_ZOOM, MIN_ZOOM, overlaps, reveal, transformOf, visibleWorld, zoomAt } from "./view";

const size = { width: 800, height: 600 };

describe("zoom and pan", () => {
  it("clamps the zoom to a sane range", () => {
    expect(clampZoom(0.01)).toBe(MIN_ZOOM);
    expect(clampZoom(99)).toBe(MAX_ZOOM);
    expect(clampZoom(1.3)).toBe(1.3);
  });

  it("zooms around the pointer: the point under it stays put", () => {
    const v = { x: 10, y: 20, k: 1 };
    const z = zoomAt(v, 2, 110, 220);
    expect(z.k).toBe(2);
    // World point (100, 200) was at screen (110, 220) and still is.
    expect(100 * z.k + z.x).toBeCloseTo(110);
    expect(200 * z.k + z.y).toBeCloseTo(220);
    expect(zoomAt(v, 100, 0, 0).k).toBe(MAX_ZOOM);
  });

  it("fits a small map at 100%, centred, and shrinks a big one", () => {
    expect(fit({ x: 0, y: 0, width: 400, height: 200 }, size)).toEqual({ k: 1, x: 200, y: 200 });
    const big = fit({ x: 0, y: 0, width: 1536, height: 300 }, size);
    expect(big.k).toBeCloseTo(0.5);
    expect(big.x).toBeCloseTo(16);
    expect(big.y).toBeCloseTo(225);
  });

  it("shows the top left when even the smallest zoom cannot fit the map", () => {
    const v = fit({ x: 0, y: 0, width: 100_000, height: 300 }, size);
    expect(v.k).toBe(MIN_ZOOM);
    expect(v.x).toBe(16);
  });

  it("centres on a point", () => {
    expect(centreOn(100, 50, size, 2)).toEqual({ k: 2, x: 200, y: 200 });
  });

  it("reveals a box off screen by panning as little as needed, and leaves a visible one alone", () => {
    const v = { x: 0, y: 0, k: 1 };
    expect(reveal(v, { x: 10 + 24, y: 100, width: 50, height: 20 }, size)).toBe(v);
    const r = reveal(v, { x: 1000, y: 100, width: 200, height: 60 }, size);
    expect(r.y).toBe(0);
    expect(1200 * r.k + r.x).toBe(800 - 24); // its right edge just inside the canvas
    const up = reveal(v, { x: 100, y: -500, width: 200, height: 60 }, size);
    expect(-500 + up.y).toBe(24);
  });

  it("knows what is on screen", () => {
    const w = visibleWorld({ x: -200, y: -100, k: 2 }, size);
    expect(w).toEqual({ x: 100, y: 50, width: 400, height: 300 });
    expect(overlaps(w, { x: 490, y: 60, width: 50, height: 10 })).toBe(true);
    expect(overlaps(w, { x: 501, y: 60, width: 50, height: 10 })).toBe(false);
  });

  it("writes the transform of the map's group", () => {
    expect(transformOf({ x: 12.345, y: -3, k: 1.25 })).toBe("translate(12.35, -3) scale(1.25)");
  });
});
