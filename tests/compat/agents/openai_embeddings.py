"""The openai SDK's embeddings: the default (base64 on the wire, decoded by the SDK), floats,
reduced dimensions and a batch."""


from openai import OpenAI

from _report import emit, run

PII = "Contact jane.doe@example.com, SSN 123-45-6789."
MODEL = "text-embedding-3-small"


def vector(v):
    return {"length": len(v), "first": v[0]}


def main():
    client = OpenAI()

    r = client.embeddings.create(model=MODEL, input=PII)
    emit("embeddings", vector(r.data[0].embedding), tokens=r.usage.prompt_tokens)

    r = client.embeddings.create(model=MODEL, input=PII, encoding_format="float")
    emit("embeddings_float", vector(r.data[0].embedding))

    r = client.embeddings.create(model=MODEL, input=PII, dimensions=256)
    emit("embeddings_dimensions", vector(r.data[0].embedding))

    r = client.embeddings.create(model=MODEL, input=[PII, "Jane Doe works at Example Corp."])
    emit("embeddings_batch", [vector(d.embedding) for d in r.data], indexes=[d.index for d in r.data])


if __name__ == "__main__":
    run(main)
