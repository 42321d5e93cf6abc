"""The LLM half of DynLLM: everything that turns a purchase history into profile facet text
and facet text into vectors. The GGUF model files and their header (`model_files`,
`gguf_header`), the llama.cpp backend (`llm_backend`), OpenAI-compatible servers for chat and
embeddings (`http_backend`), the prompt and schema (`prompt`), reading
the answer (`output`), one profile with its retry (`profiler`), the text encoder
(`text_encoder`), categories for catalogues that have none (`taxonomy`: item texts clustered,
each cluster named once by the LLM), buying facts (`facts`) and the errors they raise
(`errors`).

May import: `models.data`, `models.vocabulary`. Never `network`, `training` or `evaluation`: the
graph model only ever sees the vectors.
"""
