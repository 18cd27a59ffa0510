import { screen, waitFor } from "@testing-library/svelte";
import userEvent from "@testing-library/user-event";
import { describe, expect, it } from "vitest";
import { api, type GenEvent } from "../../lib/api";
import { applyGenEvent, emptyGen } from "../../lib/stream";
import { deferred, emit, fakeBackend } from "../../test/backend";
import { hostStatus, live, model, node, reply, thawReport } from "../../test/fixtures";
import { readyApp, renderWithApp } from "../../test/render";
import HelpPopover from "./HelpPopover.svelte";
import StatusBar from "./StatusBar.svelte";
import Toasts from "./Toasts.svelte";

describe("StatusBar", () => {
  it("shows model, device and context used", async () => {
    fakeBackend({
      status: () => hostStatus({ model: model({ device: "Metal" }), live: live({ token_count: 1234, dirty: true }) }),
    });
    const app = await readyApp();
    renderWithApp(StatusBar, {}, app);
    expect(screen.getByTestId("status-model")).toHaveTextContent("TinyLlama-1.1B-Chat");
    expect(screen.getByTestId("status-quant")).toHaveTextContent("Q4_K_M");
    expect(screen.getByTestId("status-device")).toHaveTextContent("Metal");
    expect(screen.getByTestId("status-context")).toHaveTextContent("1,234 / 2,048");
    expect(screen.getByTestId("status-unfrozen")).toBeInTheDocument();
  });

  it("fills the context meter while the first reply is generated", async () => {
    const gate = deferred();
    fakeBackend({
      status: () => hostStatus({ live: live({ token_count: 0, dirty: false }) }),
      chat_send: async (args) => {
        emit<GenEvent>(args, { kind: "progress", done: 30, total: 30 });
        emit<GenEvent>(args, { kind: "text", text: "Hel" }, { kind: "text", text: "lo" });
        await gate.promise;
        return reply({ text: "Hello", tokens: 2, live: live({ token_count: 32, dirty: true }) });
      },
    });
    const app = await readyApp();
    renderWithApp(StatusBar, {}, app);
    expect(screen.getByTestId("status-context")).toHaveTextContent("0 / 2,048");
    const done = app.session.run("Generating…", () =>
      api.chatSend("Hi", app.session.params!, (e) => (app.session.growing = applyGenEvent(app.session.growing ?? emptyGen(), e))),
    );
    await waitFor(() => expect(screen.getByTestId("status-context")).toHaveTextContent("≈ 32 / 2,048"));
    gate.resolve();
    const r = await done;
    app.session.settle(r!);
    await waitFor(() => expect(screen.getByTestId("status-context")).toHaveTextContent(/^32 \/ 2,048$/));
  });

  it("reports a thaw with its time and reuse", async () => {
    fakeBackend({
      list_tree: () => [node({ id: 3, name: "Ada" })],
      thaw: () => thawReport({ node: 3, millis: 12, reused_tokens: 1234, reprocessed_tokens: 0 }),
    });
    const app = await readyApp();
    renderWithApp(StatusBar, {}, app);
    await app.session.thaw(3);
    await waitFor(() =>
      expect(screen.getByTestId("status-report")).toHaveTextContent(
        "thawed Ada in 12 ms · full reuse of 1,234 tokens · from memory",
      ),
    );
  });

  it("says when the backend is missing", async () => {
    fakeBackend({ status: () => { throw "no"; } });
    const app = await readyApp();
    renderWithApp(StatusBar, {}, app);
    expect(screen.getByTestId("status-unavailable")).toHaveTextContent("Backend not available");
  });
});

describe("Toasts", () => {
  it("shows error messages, not their data, and dismisses them", async () => {
    const user = userEvent.setup();
    fakeBackend();
    const app = await readyApp();
    renderWithApp(Toasts, {}, app);
    app.notices.error({ code: "io", message: "Could not write the segment." });
    app.notices.error({ unexpected: true });
    const toasts = await screen.findAllByTestId("toast-error");
    expect(toasts.map((t) => t.textContent)).toEqual([
      expect.stringContaining("Could not write the segment."),
      expect.stringContaining("The backend answered with an unexpected error."),
    ]);
    expect(toasts[1].textContent).not.toContain("{");
    await user.click(screen.getAllByTestId("toast-dismiss")[0]);
    expect(screen.getAllByTestId("toast-error")).toHaveLength(1);
  });
});

describe("HelpPopover", () => {
  it("lists the shortcuts", () => {
    renderWithApp(HelpPopover, { onclose: () => {} });
    const text = screen.getByTestId("help-popover").textContent ?? "";
    for (const label of ["Send", "Stop", "Freeze", "Fork"]) expect(text).toContain(label);
    expect(text).toContain("Ctrl+S");
    expect(text).toContain("Ctrl+B");
  });
});
