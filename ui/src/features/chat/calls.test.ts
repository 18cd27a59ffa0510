import { describe, expect, it } from "vitest";
import { callArguments, messageText } from "./calls";

const call = (name: string, args: string) => ({ id: "call_0", name, arguments: args });

describe("function calls", () => {
  it("indents JSON arguments and keeps other text as written", () => {
    expect(callArguments(call("get_weather", '{"city":"Tokyo","days":[1,2]}'))).toBe(
      '{\n  "city": "Tokyo",\n  "days": [\n    1,\n    2\n  ]\n}',
    );
    expect(callArguments(call("f", " {not json "))).toBe("{not json");
  });

  it("gives a message's words and calls as one text", () => {
    expect(messageText({ role: "assistant", content: "Hello." })).toBe("Hello.");
    expect(messageText({ role: "assistant", content: "", tool_calls: [call("get_weather", '{"city": "Oslo"}')] })).toBe(
      'get_weather({"city": "Oslo"})',
    );
    expect(
      messageText({ role: "assistant", content: "Looking. ", tool_calls: [call("a", "{}"), call("b", '{"x": 1}')] }),
    ).toBe('Looking.\na({})\nb({"x": 1})');
  });
});
