import pytest
import torch
import torch.nn.functional as F

pl = pytest.importorskip("lightning.pytorch")

from trainability import mlp  # noqa: E402
from trainability.integrations.lightning import TrainabilityCallback  # noqa: E402


class Classifier(pl.LightningModule):
    def __init__(self, blow_up_at=None):
        super().__init__()
        self.net = mlp(20, 3, depth=4, width=32)
        self.blow_up_at = blow_up_at

    def training_step(self, batch, batch_idx):
        if batch_idx == self.blow_up_at:
            with torch.no_grad():
                self.net[4].weight.mul_(1000.0)
        x, y = batch
        return F.cross_entropy(self.net(x), y)  # goes through self.net, not self(...)

    def configure_optimizers(self):
        return torch.optim.SGD(self.parameters(), lr=1e-4)


@pytest.mark.filterwarnings("ignore::UserWarning")  # Lightning's advice on num_workers and logging
@pytest.mark.filterwarnings("ignore::DeprecationWarning")
@pytest.mark.filterwarnings("ignore::FutureWarning")  # Lightning on torch 2.13: torch.utils._pytree LeafSpec
def test_callback_records_and_finds_explosion():
    torch.manual_seed(0)
    data = torch.utils.data.TensorDataset(torch.randn(64 * 40, 20), torch.randint(0, 3, (64 * 40,)))
    loader = torch.utils.data.DataLoader(data, batch_size=64)
    callback = TrainabilityCallback(every=5, verbose=False)
    trainer = pl.Trainer(max_epochs=1, accelerator="cpu", logger=False, enable_checkpointing=False,
                         enable_progress_bar=False, enable_model_summary=False, callbacks=[callback])  # fmt: skip
    module = Classifier(blow_up_at=22)
    trainer.fit(module, loader)
    monitor = callback.monitor
    assert monitor.optimizer.name == "SGD" and monitor.optimizer.lr() == 1e-4  # the Trainer's optimizer
    assert set(range(0, 40, 5)) <= set(monitor.records_steps())  # and every step for a while after the spike at 22
    assert {r[1] for r in monitor.rows} >= {"net.0", "net.1", "net.8"}
    exploding = [f for f in monitor.findings if f.kind == "exploding_gradients"]
    assert exploding and exploding[0].step == 25 and "net.0" in exploding[0].layers
    assert all(not m._forward_hooks and not m._forward_pre_hooks for m in module.modules())


def test_the_optimizer_a_lightning_module_is_handed_is_read_as_the_one_inside():
    from lightning.pytorch.core.optimizer import LightningOptimizer

    from trainability.adapters.wrappers import unwrap_optimizer
    from trainability.monitor.optimizer import OptimizerView

    adam = torch.optim.Adam(mlp(4, 2, depth=2, width=8).parameters(), lr=3e-4)
    assert unwrap_optimizer(LightningOptimizer(adam)) is adam
    view = OptimizerView(LightningOptimizer(adam))
    assert view.optimizer is adam and view.kind == "adam" and view.lr() == 3e-4
