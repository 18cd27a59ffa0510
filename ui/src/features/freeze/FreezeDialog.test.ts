import { screen, waitFor } from "@testing-library/svelte";
import userEvent from "@testing-library/user-event";
import { describe, expect, it, vi } from "vitest";
import { fakeBackend, rejectWith } from "../../test/backend";
import { hostStatus, live, node } from "../../test/fixtures";
import { readyApp, renderWithApp } from "../../test/render";
import FreezeDialog from "./FreezeDialog.svelte";

describe("FreezeDialog", () => {
  it("freezes the live chat under a name and kind, then closes", async () => {
    const user = userEvent.setup();
    const frozen = node({ id: 9, name: "Terse tutor", kind: "personality", token_count: 80 });
    const backend = fakeBackend({
      status: () => hostStatus({ live: live({ dirty: true, token_count: 80 }) }),
      freeze: () => frozen,
      list_tree: () => (backend.argsOf("freeze").length ? [frozen] : []),
    });
    const app = await readyApp();
    const onclose = vi.fn();
    renderWithApp(FreezeDialog, { onclose }, app);

    expect(screen.getByTestId("freeze-submit")).toBeDisabled();
    await user.type(screen.getByTestId("freeze-name"), "Terse tutor");
    await user.click(screen.getByTestId("freeze-kind-personality"));
    await user.click(screen.getByTestId("freeze-submit"));

    expect(backend.argsOf("freeze")).toEqual([{ name: "Terse tutor", kind: "personality" }]);
    await waitFor(() => expect(onclose).toHaveBeenCalled());
    expect(app.library.nodes.map((n) => n.id)).toEqual([9]);
    expect(app.session.report).toBe("froze Terse tutor · 80 tokens");
  });

  it("offers only the story kind for a story, and submits on Enter", async () => {
    const user = userEvent.setup();
    const backend = fakeBackend({
      status: () => hostStatus({ live: live({ kind: "story", transcript: { mode: "text", text: "Once" } }) }),
      freeze: () => node({ id: 4, kind: "story" }),
    });
    const app = await readyApp();
    renderWithApp(FreezeDialog, { onclose: () => {} }, app);
    expect(screen.queryByTestId("freeze-kind-chat")).not.toBeInTheDocument();
    await user.type(screen.getByTestId("freeze-name"), "Opening{Enter}");
    expect(backend.argsOf("freeze")).toEqual([{ name: "Opening", kind: "story" }]);
  });

  it("stays open and reports a refused freeze", async () => {
    const user = userEvent.setup();
    fakeBackend({ freeze: () => rejectWith("disk_full", "Not enough disk space to freeze (needs 12 MB).") });
    const app = await readyApp();
    const onclose = vi.fn();
    renderWithApp(FreezeDialog, { onclose }, app);
    await user.type(screen.getByTestId("freeze-name"), "x{Enter}");
    await waitFor(() => expect(app.notices.items[0]?.message).toBe("Not enough disk space to freeze (needs 12 MB)."));
    expect(onclose).not.toHaveBeenCalled();
  });

  it("fills an empty branch under its name instead of making a child of it", async () => {
    const user = userEvent.setup();
    const chat = node({ id: 1, name: "Pirate", token_count: 80, own_bytes: 4000 });
    const branch = node({ id: 2, parent: 1, name: "Pirate (second try)", token_count: 80, own_bytes: 0 });
    const backend = fakeBackend({
      status: () => hostStatus({ live: live({ node: 2, dirty: true, token_count: 120 }) }),
      list_tree: () => [chat, branch],
      freeze: () => ({ ...branch, name: "Treasure", token_count: 120, own_bytes: 2000 }),
    });
    const app = await readyApp();
    await app.library.refresh();
    renderWithApp(FreezeDialog, { onclose: () => {} }, app);
    expect(screen.getByText(/fill the branch/)).toHaveTextContent("Pirate (second try), forked from Pirate");
    expect(screen.getByTestId("freeze-name")).toHaveValue("Pirate (second try)");
    await user.clear(screen.getByTestId("freeze-name"));
    await user.type(screen.getByTestId("freeze-name"), "Treasure{Enter}");
    expect(backend.argsOf("freeze")).toEqual([{ name: "Treasure", kind: "chat" }]);
  });

  it("makes a child of a node that has a state of its own", async () => {
    fakeBackend({
      status: () => hostStatus({ live: live({ node: 1, dirty: true, token_count: 120 }) }),
      list_tree: () => [node({ id: 1, name: "Pirate", token_count: 80, own_bytes: 4000 })],
    });
    const app = await readyApp();
    await app.library.refresh();
    renderWithApp(FreezeDialog, { onclose: () => {} }, app);
    expect(screen.getByText(/become a node/)).toHaveTextContent("a child of Pirate");
    expect(screen.getByTestId("freeze-name")).toHaveValue("");
  });
});
