"""PII handling: the same call under the three safety modes of pii-redact."""

import openai

import ironhost
from ironhost.testing import assert_pii_detected

PROMPT = [{"role": "user", "content": "Who is the billing contact?"}]


def ask() -> str:
    return openai.OpenAI().chat.completions.create(model="gpt-4o-mini", messages=PROMPT).choices[0].message.content


if __name__ == "__main__":
    redact = ironhost.protect_agent(safety_mode="redact", name="redact")(ask)
    answer = redact()
    print(f"redact: {answer}")
    assert answer == "The billing contact is Omar Haddad, [PHONE_REDACTED]."
    assert_pii_detected(redact, kind="phone", count=1)

    warn = ironhost.protect_agent(safety_mode="warn", name="warn")(ask)
    answer = warn()
    print(f"warn:   {answer}")
    assert "(415) 555-2671" in answer
    assert_pii_detected(warn, kind="phone", count=1)

    block = ironhost.protect_agent(safety_mode="block", name="block")(ask)
    try:
        block()
        raise AssertionError("block mode should refuse the answer")
    except ironhost.PolicyDenied as refused:
        print(f"block:  {refused}")
        assert refused.policy == "pii-redact"
