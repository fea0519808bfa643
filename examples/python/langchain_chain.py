"""LangChain LCEL chain (prompt | model | parser) under ironhost: IronhostChain adds a budget and
PII protection to every run; the chain itself is unchanged."""

from langchain_core.output_parsers import StrOutputParser
from langchain_core.prompts import ChatPromptTemplate
from langchain_openai import ChatOpenAI

from ironhost.langchain import IronhostChain

prompt = ChatPromptTemplate.from_messages(
    [("system", "You qualify sales leads in one sentence."), ("human", "Lead: {lead}")]
)
chain = IronhostChain(prompt | ChatOpenAI(model="gpt-4o-mini") | StrOutputParser(), budget=0.5, name="qualify")

if __name__ == "__main__":
    leads = ["Acme, 500 staff, asked for pricing", "Initech, contact jane.doe@initech.example", "Globex, churned 2024"]
    answers = chain.batch([{"lead": lead} for lead in leads])
    m = chain.metrics()
    for lead, answer in zip(leads, answers):
        print(f"{lead[:28]:28} -> {answer[:60]}")
    print(f"{m['llm_calls']} calls, ${m['cost_usd']:.6f}, PII found {m['pii_by_kind']}")
    assert len(answers) == 3 and all(answers)
    # The lead with an email was redacted at the chain's input, before any model saw it.
    assert m["pii_by_kind"] == {"email": 1} and m["llm_calls"] == 3
