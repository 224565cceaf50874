"""The `openai` client against `paperworks serve`: argv base_url. Streams a chat completion and
a legacy completion and compares each with the same request unstreamed (greedy)."""
import sys

import openai

c = openai.OpenAI(base_url=sys.argv[1], api_key="unused")
msgs = [{"role": "user", "content": "Name three colours."}]
plain = c.chat.completions.create(model="m", messages=msgs, max_tokens=24, temperature=0, seed=1)
chunks = list(c.chat.completions.create(model="m", messages=msgs, max_tokens=24, temperature=0, seed=1, stream=True))
text = "".join(ch.choices[0].delta.content or "" for ch in chunks if ch.choices)
assert text == plain.choices[0].message.content, (text, plain)
usage = chunks[-1].usage
assert usage is not None and usage.completion_tokens == plain.usage.completion_tokens, chunks[-1]
p = c.completions.create(model="m", prompt="The sky is", max_tokens=8, temperature=0)
s = "".join(ch.choices[0].text for ch in c.completions.create(model="m", prompt="The sky is", max_tokens=8, temperature=0, stream=True) if ch.choices)
assert s == p.choices[0].text, (s, p)
try:
    c.embeddings.create(model="m", input="x")
    raise SystemExit("embeddings should be refused")
except openai.BadRequestError as e:
    refused = str(e.body.get("message") if isinstance(e.body, dict) else e)
print(f"openai {openai.__version__}: chat streamed {len(chunks)} chunks == plain; "
      f"legacy completion streamed == plain ({p.choices[0].text!r}); embeddings: {refused[:40]}")
