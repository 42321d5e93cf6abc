"""How recommendations are scored: full-ranking metrics with tie handling (`metrics`), the
candidate sets and the leakage-free batch loop for any scorer (`protocols`), the baselines
(`baselines`), the profile-text scorer that matches item titles to a user's profile facets
(`profile_text`) and the model report that sets DynLLM beside them (`report`).

`metrics`, `protocols` and `baselines` import only `models.data` and `models.vocabulary`: a
baseline never depends on the network. `report` trains DynLLM for its rows, so it alone may also
import `models.training` and `models.network`.
"""
