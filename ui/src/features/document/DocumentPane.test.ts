import { screen, waitFor } from "@testing-library/svelte";
import userEvent from "@testing-library/user-event";
import { describe, expect, it } from "vitest";
import type { GenEvent } from "../../lib/api";
import { deferred, emit, fakeBackend, rejectWith } from "../../test/backend";
import { live, node, reply } from "../../test/fixtures";
import { readyApp, renderWithApp } from "../../test/render";
import DocumentPane from "./DocumentPane.svelte";

const paper = node({ id: 20, name: "paper", kind: "document", token_count: 40000 });

describe("DocumentPane", () => {
  it("processes a file with progress, cancels through stop, and opens the new node", async () => {
    const user = userEvent.setup();
    const gate = deferred();
    let processed = false;
    const backend = fakeBackend({
      list_tree: () => (processed ? [paper] : []),
      process_document: async (args) => {
        emit<GenEvent>(args, { kind: "progress", done: 0, total: 40000 }, { kind: "progress", done: 12000, total: 40000 });
        await gate.promise;
        processed = true;
        return paper;
      },
    });
    const app = await readyApp();
    renderWithApp(DocumentPane, {}, app);

    await user.type(screen.getByTestId("doc-path"), "/docs/paper.md");
    expect(screen.getByTestId("doc-name")).toHaveValue("paper");
    await user.click(screen.getByTestId("doc-process"));

    await waitFor(() => expect(screen.getByTestId("doc-progress-label")).toHaveTextContent("12,000 / 40,000 tokens · 30%"));
    expect(backend.argsOf("process_document")[0]).toMatchObject({ path: "/docs/paper.md", name: "paper" });
    await user.click(screen.getByTestId("doc-cancel"));
    expect(backend.argsOf("stop")).toHaveLength(1);

    gate.resolve();
    await waitFor(() => expect(screen.queryByTestId("doc-progress")).not.toBeInTheDocument());
    expect(screen.getByTestId("doc-select")).toHaveValue("20");
    await waitFor(() => expect(app.session.report).toBe("read paper · 40,000 tokens"));
  });

  it("shows the backend's reason when processing is refused", async () => {
    const user = userEvent.setup();
    fakeBackend({ process_document: () => rejectWith("too_long", "The document needs 9,000 tokens; the context holds 2,048.") });
    const app = await readyApp();
    renderWithApp(DocumentPane, {}, app);
    await user.type(screen.getByTestId("doc-path"), "/docs/big.txt");
    await user.click(screen.getByTestId("doc-process"));
    await waitFor(() => expect(app.notices.items[0]?.message).toMatch(/needs 9,000 tokens/));
    expect(screen.queryByTestId("doc-progress")).not.toBeInTheDocument();
  });

  it("answers questions from the document's state and continues from the last answer", async () => {
    const user = userEvent.setup();
    const backend = fakeBackend({
      list_tree: () => [paper],
      ask: (args) => {
        emit<GenEvent>(args, { kind: "text", text: "Three " }, { kind: "text", text: "authors." });
        return reply({ text: "Three authors.", tokens: 3 });
      },
      continue_from_answer: () =>
        live({ node: null, dirty: true, transcript: { mode: "chat", messages: [{ role: "user", content: "Who wrote it?" }] } }),
    });
    const app = await readyApp();
    renderWithApp(DocumentPane, {}, app);

    await user.type(screen.getByTestId("doc-question"), "Who wrote it?");
    await user.click(screen.getByTestId("doc-ask"));
    await waitFor(() => expect(screen.getByTestId("qa-0")).toHaveTextContent("Who wrote it? Three authors."));
    expect(backend.argsOf("ask")[0]).toMatchObject({ node: 20, question: "Who wrote it?" });

    app.session.view = "document";
    await user.click(screen.getByTestId("qa-continue"));
    await waitFor(() => expect(app.session.view).toBe("chat"));
    expect(backend.argsOf("continue_from_answer")).toHaveLength(1);
    expect(app.session.live?.dirty).toBe(true);
  });

  it("shows the questions asked of a document before, when it is opened again", async () => {
    const user = userEvent.setup();
    const notes = node({ id: 21, name: "notes", kind: "document", token_count: 900 });
    const history: Record<number, unknown[]> = {
      20: [
        { asked_at_ms: 1, question: "Who wrote it?", answer: "Three authors.", tokens: 3, finish: "stop_token" },
        { asked_at_ms: 2, question: "When?", answer: "In 1998.", tokens: 4, finish: "stop_token" },
      ],
      21: [],
    };
    const backend = fakeBackend({
      list_tree: () => [paper, notes],
      document_questions: (args) => history[args.node as number] ?? [],
    });
    const app = await readyApp();
    app.session.live = live({ node: 20, kind: "document" });
    renderWithApp(DocumentPane, {}, app);
    await waitFor(() => expect(screen.getByTestId("qa-1")).toHaveTextContent("When? In 1998."));
    expect(screen.getByTestId("qa-0")).toHaveTextContent("Who wrote it? Three authors.");
    // Another document: its own (empty) history; back again: the first one's.
    await user.selectOptions(screen.getByTestId("doc-select"), "21");
    await waitFor(() => expect(screen.queryByTestId("qa-0")).toBeNull());
    await user.selectOptions(screen.getByTestId("doc-select"), "20");
    await waitFor(() => expect(screen.getByTestId("qa-1")).toHaveTextContent("In 1998."));
    expect(backend.argsOf("document_questions").map((a) => a.node)).toEqual([20, 21, 20]);
  });
});
