#include <dlcore/train/history.h>

#include <cmath>
#include <filesystem>

TEST_CASE("History records epoch rows under named columns", "[history]") {
  dlcore::History h;
  CHECK(h.num_epochs() == 0);
  CHECK(std::isnan(h.last("anything")));
  h.add_epoch({{"epoch", 1}, {"train_loss", 0.9}});
  h.add_epoch({{"epoch", 2}, {"train_loss", 0.5}, {"val_loss", 0.6}});
  CHECK(h.num_epochs() == 2);
  CHECK(
      h.epoch_columns() ==
      std::vector<std::string>{"epoch", "train_loss", "val_loss"});
  CHECK(h.column("train_loss") == std::vector<double>{0.9, 0.5});
  CHECK(std::isnan(h.at(0, "val_loss")));
  CHECK(h.at(1, "val_loss") == 0.6);
  CHECK(h.last("epoch") == 2);
  CHECK_THROWS_WITH(
      h.column("nope"), Catch::Contains("History: no epoch column 'nope'"));
  CHECK_THROWS_WITH(h.at(5, "epoch"), Catch::Contains("out of range"));
}

TEST_CASE("History records the usual train/validation columns", "[history]") {
  dlcore::History h;
  dlcore::EpochMetrics train{0.5, 0.8, 100, 4, 1.5};
  dlcore::EpochMetrics val{0.6, 0.75, 20, 1, 0.25};
  h.add_epoch(1, train, val);
  CHECK(
      h.epoch_columns() == std::vector<std::string>{
                               "epoch",
                               "train_loss",
                               "train_accuracy",
                               "val_loss",
                               "val_accuracy",
                               "seconds"});
  CHECK(h.last("val_accuracy") == 0.75);
  CHECK(h.last("seconds") == 1.75);
  h.add_epoch(2, train, val, {{"lr", 0.01}});
  CHECK(h.epoch_columns().back() == "lr");
  CHECK(std::isnan(h.at(0, "lr")));
  CHECK(h.last("lr") == 0.01);
  CHECK(h.num_epochs() == 2);
}

TEST_CASE(
    "History's step recorder stores every group's LR and momentum",
    "[history]") {
  dlcore::History h;
  auto rec = h.step_recorder();
  dlcore::StepInfo s;
  s.epoch = 1;
  s.step = 0;
  s.global_step = 10;
  s.loss = 2.5;
  s.accuracy = 0.25;
  s.batch_size = 64;
  s.lrs = {0.1, 0.01};
  s.momenta = {0.9, std::nan("")};
  rec(s);
  s.step = 1;
  s.global_step = 11;
  s.lrs = {0.2};
  s.momenta = {0.8};
  rec(s);
  REQUIRE(h.steps().size() == 2);
  CHECK(h.num_groups() == 2);
  dlcore::CsvTable t = h.steps_table();
  CHECK(
      t.header() == std::vector<std::string>{
                        "epoch",
                        "step",
                        "global_step",
                        "loss",
                        "accuracy",
                        "batch_size",
                        "lr_0",
                        "lr_1",
                        "momentum_0",
                        "momentum_1"});
  CHECK(
      t.rows()[0] ==
      std::vector<std::string>{
          "1", "0", "10", "2.5", "0.25", "64", "0.1", "0.01", "0.9", "nan"});
  CHECK(t.rows()[1][7] == "nan"); // second group missing in that step
}

TEST_CASE("History exports CSV that reads back exactly", "[history]") {
  dlcore::History h;
  h.add_epoch({{"epoch", 1}, {"loss", 1.0 / 3.0}});
  h.add_epoch({{"epoch", 2}, {"loss", 0.1}, {"acc", 0.5}});
  auto path = std::filesystem::temp_directory_path() /
              ("dlcore_history_" + std::to_string(::getpid())) / "curves.csv";
  h.epochs_table().write(path.string());
  dlcore::CsvTable back = dlcore::CsvTable::read(path.string());
  CHECK(back.header() == h.epoch_columns());
  CHECK(back.column("loss") == h.column("loss"));
  CHECK(std::isnan(back.column("acc")[0]));
  CHECK(back.column("acc")[1] == 0.5);
  std::filesystem::remove_all(path.parent_path());

  dlcore::Json j = h.to_json();
  const dlcore::Json& epochs = dlcore::json_at(j, "epochs");
  CHECK(
      dlcore::json_get<double>(
          dlcore::json_at(dlcore::json_at(epochs, "loss"), 0)) == 1.0 / 3.0);
  CHECK(dlcore::json_at(dlcore::json_at(epochs, "acc"), 0).is_null());
  CHECK(
      dlcore::json_get<double>(
          dlcore::json_at(dlcore::json_at(epochs, "acc"), 1)) == 0.5);
  CHECK(dlcore::json_get<int64_t>(j, "steps") == 0);
  // The columns in the order they were added, in the file as in memory.
  const dlcore::Json back_json = dlcore::parse_json(dlcore::dump_json(j));
  CHECK(back_json == j);
  CHECK(dlcore::json_at(back_json, "epochs").begin().key() == "epoch");
  CHECK(
      dlcore::dump_json(dlcore::json_at(back_json, "epochs"), -1) ==
      "{\"epoch\":[1.0,2.0],\"loss\":[" +
          dlcore::dump_json(dlcore::Json(1.0 / 3.0)) +
          ",0.1],\"acc\":[null,0.5]}");
}
