"""LangChain memory (RunnableWithMessageHistory) under ironhost: what the conversation remembers
is what the policies let through, so personal data never enters the history."""

from langchain_core.chat_history import InMemoryChatMessageHistory
from langchain_core.prompts import ChatPromptTemplate, MessagesPlaceholder
from langchain_core.runnables.history import RunnableWithMessageHistory
from langchain_openai import ChatOpenAI

from ironhost.langchain import IronhostChain

histories = {}


def history(session_id: str) -> InMemoryChatMessageHistory:
    return histories.setdefault(session_id, InMemoryChatMessageHistory())


prompt = ChatPromptTemplate.from_messages(
    [("system", "You are a support agent."), MessagesPlaceholder("history"), ("human", "{message}")]
)
bot = IronhostChain(
    RunnableWithMessageHistory(prompt | ChatOpenAI(model="gpt-4o-mini"), history,
                               input_messages_key="message", history_messages_key="history"),
    name="support",
)

if __name__ == "__main__":
    cfg = {"configurable": {"session_id": "ticket-42"}}
    for message in ["Hi, I'm Li Chen, card 4111 1111 1111 1111 was charged twice", "Can you refund it?"]:
        print(f"> {message}\n< {bot.invoke({'message': message}, config=cfg).content[:70]}")
    stored = [m.content for m in histories["ticket-42"].messages]
    assert len(stored) == 4
    assert stored[0] == "Hi, I'm Li Chen, card [CREDIT_CARD_REDACTED] was charged twice"
    assert "4111" not in repr(histories)
    assert bot.metrics()["pii_by_kind"] == {"credit_card": 1}
