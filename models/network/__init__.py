"""The graph half of DynLLM: the network (`dynllm`), its facet projection, distillation and
attention (`facets`), the temporal attention layer (`graph_attention`), node memory (`memory`)
and the cosine time encoding (`time_encoding`).

May import: `models.data`, `models.vocabulary`, torch. Never `profiles` (profiles arrive as
vectors through `models.data.profile_index`), `training` or `evaluation`.
"""
