import { screen, waitFor } from "@testing-library/svelte";
import userEvent from "@testing-library/user-event";
import { describe, expect, it } from "vitest";
import type { NodeView } from "../../lib/api";
import { fakeBackend } from "../../test/backend";
import { node } from "../../test/fixtures";
import { readyApp, renderWithApp } from "../../test/render";
import NodeDetails from "./NodeDetails.svelte";

const root = node({ id: 1, name: "Tutor", kind: "personality" });
const lesson = node({ id: 2, parent: 1, name: "Lesson", tags: ["math"], notes: "" });
const other = node({ id: 3, name: "Other" });
const child = node({ id: 4, parent: 2, name: "Lesson 2" });

async function setup() {
  let nodes: NodeView[] = [root, lesson, other, child];
  const edit = (patch: Partial<NodeView>) => {
    nodes = nodes.map((n) => (n.id === 2 ? { ...n, ...patch } : n));
    return nodes.find((n) => n.id === 2)!;
  };
  const backend = fakeBackend({
    list_tree: () => nodes,
    rename_node: ({ name }) => edit({ name: name as string }),
    set_notes: ({ notes }) => edit({ notes: notes as string }),
    add_tag: ({ tag }) => edit({ tags: [...lesson.tags, tag as string] }),
    remove_tag: () => edit({ tags: [] }),
    set_pinned: ({ pinned }) => edit({ pinned: pinned as boolean }),
    move_node: ({ parent }) => edit({ parent: parent as number | null }),
  });
  const app = await readyApp();
  const view = renderWithApp(NodeDetails, { node: app.library.byId(2)! }, app);
  // Follow the library's copy, as the Inspector does.
  const sync = () => view.rerender({ node: app.library.byId(2)! });
  return { backend, app, sync };
}

describe("NodeDetails", () => {
  it("renames on submit", async () => {
    const user = userEvent.setup();
    const { backend, app } = await setup();
    const name = screen.getByTestId("details-name");
    await user.clear(name);
    await user.type(name, "Algebra{Enter}");
    expect(backend.argsOf("rename_node")).toEqual([{ node: 2, name: "Algebra" }]);
    await waitFor(() => expect(app.library.byId(2)?.name).toBe("Algebra"));
  });

  it("saves notes, adds and removes tags, pins", async () => {
    const user = userEvent.setup();
    const { backend, sync } = await setup();
    await user.type(screen.getByTestId("details-notes"), "Good at fractions");
    await user.click(screen.getByTestId("details-notes-save"));
    expect(backend.argsOf("set_notes")).toEqual([{ node: 2, notes: "Good at fractions" }]);

    await user.type(screen.getByTestId("tag-input"), "#best{Enter}");
    expect(backend.argsOf("add_tag")).toEqual([{ node: 2, tag: "best" }]);
    await user.click(screen.getByTestId("tag-remove-math"));
    expect(backend.argsOf("remove_tag")).toEqual([{ node: 2, tag: "math" }]);

    await user.click(screen.getByTestId("details-pin"));
    expect(backend.argsOf("set_pinned")).toEqual([{ node: 2, pinned: true }]);
    await sync();
    expect(screen.getByTestId("details-pin")).toHaveTextContent("Unpin");
  });

  it("moves under another parent, never under its own subtree", async () => {
    const user = userEvent.setup();
    const { backend } = await setup();
    const options = [...screen.getByTestId("details-parent").querySelectorAll("option")].map((o) => o.value);
    expect(options).toEqual(["", "1", "3"]);
    await user.selectOptions(screen.getByTestId("details-parent"), "");
    await user.click(screen.getByTestId("details-move"));
    expect(backend.argsOf("move_node")).toEqual([{ node: 2, parent: null }]);
  });

  it("opens export and delete", async () => {
    const user = userEvent.setup();
    const { app } = await setup();
    await user.click(screen.getByTestId("details-export"));
    expect(app.ui.dialog).toEqual({ kind: "export", node: 2 });
    await user.click(screen.getByTestId("details-delete"));
    expect(app.ui.dialog).toEqual({ kind: "delete", node: 2 });
  });
});
