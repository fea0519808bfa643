"""Unit-testing agent code with ironhost.testing: MockRuntime needs no native build and answers
deterministically; the helpers assert what the policies did. Run it with pytest, or directly."""

import openai

from ironhost.testing import MockRuntime, assert_budget_exceeded, assert_pii_detected, pii_samples


def triage(text: str) -> str:
    """The agent code under test."""
    r = openai.OpenAI().chat.completions.create(model="gpt-4o-mini", messages=[{"role": "user", "content": text}])
    return r.choices[0].message.content


def test_triage_labels_and_redacts() -> None:
    sample = pii_samples("email", count=1, seed=1)[0]
    with MockRuntime(replies={"refund": "billing"}) as rt:
        assert triage(f"I want a refund, {sample.value}") == "billing"
        assert_pii_detected(rt, kind="email", count=1)
        assert sample.value not in rt.calls[0].prompt


def test_triage_stops_at_the_budget() -> None:
    with MockRuntime(budget=0.0001):
        with assert_budget_exceeded():
            for _ in range(100):
                triage("x" * 2000)


if __name__ == "__main__":
    test_triage_labels_and_redacts()
    test_triage_stops_at_the_budget()
    print("2 tests passed")
