import { describe, expect, it } from "vitest";
import { joinDraft } from "./join";

describe("joinDraft", () => {
  it("puts a space between two words", () => {
    expect(joinDraft("He opened the door", "Then")).toBe(" Then");
  });
  it("joins as typed where a space is already there or would be wrong", () => {
    expect(joinDraft("He opened the door", " Then")).toBe(" Then");
    expect(joinDraft("He opened the door ", "Then")).toBe("Then");
    expect(joinDraft("He opened the door", ", slowly")).toBe(", slowly");
    expect(joinDraft("He opened the door", ".")).toBe(".");
    expect(joinDraft("He said “", "Hello")).toBe("Hello");
    expect(joinDraft("Line one\n", "Line two")).toBe("Line two");
  });
  it("leaves the start of a story and an empty draft alone", () => {
    expect(joinDraft("", "Once")).toBe("Once");
    expect(joinDraft("Once", "")).toBe("");
  });
});
