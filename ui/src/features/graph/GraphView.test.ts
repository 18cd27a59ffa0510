import { cleanup, fireEvent, screen, waitFor, within } from "@testing-library/svelte";
import userEvent from "@testing-library/user-event";
import { describe, expect, it } from "vitest";
import { fakeBackend } from "../../test/backend";
import { hostStatus, live, node, thawReport } from "../../test/fixtures";
import { readyApp, renderWithApp } from "../../test/render";
import GraphView from "./GraphView.svelte";

// 1 Root ─┬─ 2 Left ─┬─ 4 Deep
//         │          └─ 5 Fork of Left (shares its parent's state)
//         └─ 3 Right
// 8 Another tree
const nodes = [
  node({ id: 1, name: "Root", created_at: 1 }),
  node({ id: 2, parent: 1, name: "Left", created_at: 2, token_count: 900 }),
  node({ id: 3, parent: 1, name: "Right", created_at: 3 }),
  node({ id: 4, parent: 2, name: "Deep", created_at: 4 }),
  node({ id: 5, parent: 2, name: "Fork of Left", created_at: 5, token_count: 900, own_bytes: 0 }),
  node({ id: 8, name: "Another tree", created_at: 8 }),
];

async function mapOf(over: { liveNode?: number | null; dirty?: boolean } = {}) {
  const backend = fakeBackend({
    status: () => hostStatus({ live: live({ node: over.liveNode ?? null, dirty: over.dirty ?? false, token_count: 10 }) }),
    list_tree: () => nodes,
    thaw: ({ node }) => thawReport({ node: node as number, live: live({ node: node as number }) }),
  });
  const app = await readyApp();
  app.session.view = "graph";
  renderWithApp(GraphView, {}, app);
  return { backend, app, svg: screen.getByTestId("graph-svg") };
}

const transform = () => screen.getByTestId("graph-viewport").getAttribute("transform");

describe("GraphView", () => {
  it("maps the whole library by default, marks the current node, and thaws on click", async () => {
    const user = userEvent.setup();
    const { backend, app } = await mapOf({ liveNode: 2 });

    expect(screen.getByTestId("graph-root")).toHaveValue("all");
    for (const id of [1, 2, 3, 4, 5, 8]) expect(screen.getByTestId(`graph-node-${id}`)).toBeInTheDocument();
    expect(screen.getByTestId("graph-edge-1-2")).toBeInTheDocument();
    expect(screen.getByTestId("graph-edge-2-4")).toBeInTheDocument();
    expect(screen.getByTestId("graph-node-2")).toHaveClass("current");
    expect(screen.getByTestId("graph-node-2")).toHaveAttribute("aria-current", "true");

    await user.click(screen.getByTestId("graph-node-3"));
    expect(backend.argsOf("thaw")).toEqual([{ node: 3 }]);
    await waitFor(() => expect(screen.getByTestId("graph-node-3")).toHaveClass("current"));
    expect(app.session.view).toBe("graph"); // the map stays open after a thaw from it
  });

  it("switches to one tree, and back to the whole library", async () => {
    const user = userEvent.setup();
    await mapOf();
    await user.selectOptions(screen.getByTestId("graph-root"), "8");
    expect(screen.getByTestId("graph-node-8")).toBeInTheDocument();
    expect(screen.queryByTestId("graph-node-1")).not.toBeInTheDocument();
    await user.selectOptions(screen.getByTestId("graph-root"), "all");
    expect(screen.getByTestId("graph-node-1")).toBeInTheDocument();
  });

  it("shows the same map again after leaving it", async () => {
    const user = userEvent.setup();
    const { app } = await mapOf();
    await user.selectOptions(screen.getByTestId("graph-root"), "8");
    cleanup();
    renderWithApp(GraphView, {}, app);
    expect(screen.getByTestId("graph-root")).toHaveValue("8");
  });

  it("maps the subtree of the selected node, and keeps it while the selection moves", async () => {
    const user = userEvent.setup();
    const { app, svg } = await mapOf();
    app.library.selected = 2;
    const select = screen.getByTestId("graph-root");
    await waitFor(() => expect(within(select).getByRole("option", { name: "Subtree of Left" })).toBeInTheDocument());
    await user.selectOptions(select, "subtree");

    expect(select).toHaveValue("subtree:2");
    expect(screen.getByTestId("graph-node-2")).toBeInTheDocument();
    expect(screen.getByTestId("graph-node-4")).toBeInTheDocument();
    expect(screen.queryByTestId("graph-node-1")).not.toBeInTheDocument();
    expect(screen.queryByTestId("graph-node-3")).not.toBeInTheDocument();
    expect(screen.queryByTestId("graph-edge-1-2")).not.toBeInTheDocument();

    svg.focus();
    await user.keyboard("{ArrowRight}");
    expect(app.library.selected).toBe(4);
    expect(select).toHaveValue("subtree:2");
    // Now the selection offers its own subtree, next to the one mapped.
    expect(within(select).getByRole("option", { name: "Subtree of Deep" })).toBeInTheDocument();
  });

  it("shows each node's kind, a clipped preview with the full text in its tooltip, and its size", async () => {
    const long = "The keeper had not spoken to anyone in eleven days when the lamp\nwent dark.";
    fakeBackend({ list_tree: () => [node({ id: 1, name: "Lighthouse", kind: "story", preview: long, token_count: 1234 })] });
    const app = await readyApp();
    renderWithApp(GraphView, {}, app);

    const box = screen.getByTestId("graph-node-1");
    expect(within(box).getByRole("img", { name: "Story" })).toBeInTheDocument();
    const preview = screen.getByTestId("graph-preview-1").textContent!;
    expect(preview.endsWith("…")).toBe(true);
    expect(long.replace("\n", " ").startsWith(preview.slice(0, -1))).toBe(true);
    expect(box.querySelector("title")!.textContent).toContain(long.replace("\n", " "));
    expect(screen.getByTestId("graph-meta-1")).toHaveTextContent("1.2k tokens · 2.4 MB");
  });

  it("labels an unfilled fork of a whole node 'empty branch', not 0 B", async () => {
    await mapOf();
    expect(screen.getByTestId("graph-meta-5")).toHaveTextContent("900 tokens · empty branch");
    expect(screen.getByTestId("graph-meta-5")).not.toHaveTextContent("0 B");
  });

  it("walks the tree with the arrows and thaws with Enter", async () => {
    const user = userEvent.setup();
    const { app, backend, svg } = await mapOf({ liveNode: 1 });
    svg.focus();
    expect(screen.getByTestId("graph-node-1")).toHaveClass("selected"); // the live node, as nothing is selected

    await user.keyboard("{ArrowRight}");
    expect(app.library.selected).toBe(2);
    await user.keyboard("{ArrowRight}");
    expect(app.library.selected).toBe(4);
    await user.keyboard("{ArrowDown}");
    expect(app.library.selected).toBe(5);
    await user.keyboard("{ArrowUp}");
    expect(app.library.selected).toBe(4);
    await user.keyboard("{ArrowDown}{ArrowLeft}");
    expect(app.library.selected).toBe(2);
    await user.keyboard("{ArrowDown}");
    expect(app.library.selected).toBe(3);
    await user.keyboard("{ArrowUp}{ArrowRight}"); // back down the branch last walked: to 5
    expect(app.library.selected).toBe(5);
    await user.keyboard("{Home}");
    expect(app.library.selected).toBe(1);
    await user.keyboard("{ArrowDown}"); // the next tree of the library
    expect(app.library.selected).toBe(8);
    expect(screen.getByTestId("graph-node-8")).toHaveClass("selected");
    expect(svg).toHaveAttribute("aria-activedescendant", "graph-item-8");

    await user.keyboard("{Enter}");
    expect(backend.argsOf("thaw")).toEqual([{ node: 8 }]);
    await waitFor(() => expect(screen.getByTestId("graph-node-8")).toHaveClass("current"));
  });

  it("asks before Enter throws away unfrozen work", async () => {
    const user = userEvent.setup();
    const { app, backend, svg } = await mapOf({ liveNode: 1, dirty: true });
    svg.focus();
    await user.keyboard("{ArrowRight}{Enter}");
    expect(backend.argsOf("thaw")).toEqual([]);
    expect(app.ui.dialog).toEqual({ kind: "unfrozen", node: 2 });
  });

  it("leaves keys typed in the select alone", async () => {
    const { app } = await mapOf({ liveNode: 1 });
    await fireEvent.keyDown(screen.getByTestId("graph-root"), { key: "ArrowRight" });
    expect(app.library.selected).toBe(null);
  });

  it("highlights the path from the root to the selected node", async () => {
    const { app } = await mapOf({ liveNode: 3 });
    app.library.selected = 4;
    await waitFor(() => expect(screen.getByTestId("graph-node-4")).toHaveClass("on-path"));
    for (const id of [1, 2, 4]) expect(screen.getByTestId(`graph-node-${id}`)).toHaveClass("on-path");
    for (const id of [3, 5, 8]) expect(screen.getByTestId(`graph-node-${id}`)).not.toHaveClass("on-path");
    expect(screen.getByTestId("graph-edge-1-2")).toHaveClass("on-path");
    expect(screen.getByTestId("graph-edge-2-4")).toHaveClass("on-path");
    expect(screen.getByTestId("graph-edge-1-3")).not.toHaveClass("on-path");
    expect(screen.getByTestId("graph-edge-2-5")).not.toHaveClass("on-path");
    // The current node is still told apart.
    expect(screen.getByTestId("graph-node-3")).toHaveClass("current");
  });

  it("zooms with the buttons, the keys and Ctrl+wheel, and fits the map", async () => {
    const user = userEvent.setup();
    const { svg } = await mapOf({ liveNode: 4 });
    const start = transform();
    expect(start).toMatch(/scale\(1\)$/); // a small library fits at 100%
    expect(screen.getByTestId("graph-zoom")).toHaveTextContent("100%");

    await user.click(screen.getByTestId("graph-zoom-in"));
    expect(transform()).toMatch(/scale\(1\.25\)$/);
    expect(screen.getByTestId("graph-zoom")).toHaveTextContent("125%");
    await user.click(screen.getByTestId("graph-zoom-out"));
    await user.click(screen.getByTestId("graph-zoom-out"));
    expect(transform()).toMatch(/scale\(0\.8\)$/);

    await user.click(screen.getByTestId("graph-fit"));
    expect(transform()).toBe(start);

    for (let i = 0; i < 30; i++) await fireEvent.wheel(svg, { deltaY: -200, ctrlKey: true, clientX: 50, clientY: 50 });
    expect(transform()).toMatch(/scale\(2\.5\)$/); // clamped
    svg.focus();
    await user.keyboard("0");
    expect(transform()).toBe(start);
    await user.keyboard("-");
    expect(transform()).toMatch(/scale\(0\.8\)$/);
  });

  it("pans by dragging and by the wheel, without thawing what the drag started on", async () => {
    const { backend, svg } = await mapOf();
    const box = screen.getByTestId("graph-node-1");
    const before = transform();
    await fireEvent.pointerDown(box, { pointerId: 1, button: 0, clientX: 100, clientY: 100 });
    await fireEvent.pointerMove(svg, { pointerId: 1, clientX: 160, clientY: 130 });
    await fireEvent.pointerUp(svg, { pointerId: 1, clientX: 160, clientY: 130 });
    await fireEvent.click(box);
    expect(backend.argsOf("thaw")).toEqual([]);
    const [x0, y0] = before!.match(/-?[\d.]+/g)!.map(Number);
    const [x1, y1] = transform()!.match(/-?[\d.]+/g)!.map(Number);
    expect([x1 - x0, y1 - y0]).toEqual([60, 30]);

    await fireEvent.wheel(svg, { deltaY: 40 });
    const [, y2] = transform()!.match(/-?[\d.]+/g)!.map(Number);
    expect(y2).toBe(y1 - 40);

    await fireEvent.click(box); // a click that is not the end of a drag thaws
    expect(backend.argsOf("thaw")).toEqual([{ node: 1 }]);
  });

  it("centres on the current node", async () => {
    const user = userEvent.setup();
    await mapOf({ liveNode: 4 });
    await user.click(screen.getByTestId("graph-zoom-in"));
    await user.click(screen.getByTestId("graph-centre"));
    const [x, y, k] = transform()!.match(/-?[\d.]+/g)!.map(Number);
    const p = screen.getByTestId("graph-node-4").getAttribute("transform")!.match(/-?[\d.]+/g)!.map(Number);
    // The middle of node 4's box sits in the middle of the (unmeasured, 800×600) canvas.
    expect((p[0] + 104) * k + x).toBeCloseTo(400);
    expect((p[1] + 30) * k + y).toBeCloseTo(300);
  });

  it("explains an empty library", async () => {
    fakeBackend();
    const app = await readyApp();
    renderWithApp(GraphView, {}, app);
    expect(screen.getByTestId("graph-empty")).toBeInTheDocument();
  });
});
