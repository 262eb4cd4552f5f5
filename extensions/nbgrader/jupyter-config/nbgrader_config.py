# nbgrader in the AI factory's shared environment (installed as <venv>/etc/jupyter/nbgrader_config.py
# by `make install`): every transfer goes through the per-course exchange with group permissions.
c = get_config()  # noqa: F821  (provided by traitlets)

PLUGIN = "aifactory.extensions.nbgrader.exchange."
c.ExchangeFactory.exchange = PLUGIN + "Exchange"
c.ExchangeFactory.fetch_assignment = PLUGIN + "ExchangeFetchAssignment"
c.ExchangeFactory.fetch_feedback = PLUGIN + "ExchangeFetchFeedback"
c.ExchangeFactory.submit = PLUGIN + "ExchangeSubmit"
c.ExchangeFactory.list = PLUGIN + "ExchangeList"
c.ExchangeFactory.release_assignment = PLUGIN + "ExchangeReleaseAssignment"
c.ExchangeFactory.collect = PLUGIN + "ExchangeCollect"
c.ExchangeFactory.release_feedback = PLUGIN + "ExchangeReleaseFeedback"
